"""What a reconciler does after an API error the client did not retry away (pure).

The client retries transient failures (Unavailable) itself, with backoff and a cap; the
reconciler is the second and last layer, and only requeues. Errors no retry fixes — RBAC denies
the request (Forbidden), the server rejects the object (Invalid), the object is gone (NotFound)
— are a problem a person must fix: said once in the log, an Event and `ptc status`, and retried
slowly in case someone fixes it. A write refused because leadership ran out (NotLeader) is no
failure at all: the reconciler waits for leadership.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.shell.kube.errors import Forbidden, Gone, Invalid, KubeError, NotFound, NotLeader

TRANSIENT_BACKOFF = (1.0, 30.0)  # seconds: first requeue after a transient failure, cap
PERMANENT_BACKOFF = (30.0, 300.0)  # a person must act: look again now and then, not in a loop
NOT_LEADER_WAIT = 5.0  # leadership changes wake the reconciler; this only bounds the wait


@dataclass(frozen=True)
class AfterError:
    """How long to wait before the next reconcile, and what a person must be told (if any)."""

    delay: float
    problem: str | None = None
    counts_as_failure: bool = True


def admission_refused(message: str) -> bool:
    """Whether a 403 came from admission (a ValidatingAdmissionPolicy or a webhook), not RBAC:
    granting a permission would not help. The API server's own wording is the only sign."""
    return "ValidatingAdmissionPolicy" in message or "admission webhook" in message


def after_api_error(exc: KubeError, failures: int) -> AfterError:
    """The requeue for the `failures`-th API error in a row (1-based); jitter is the caller's."""
    if isinstance(exc, NotLeader):
        return AfterError(NOT_LEADER_WAIT, counts_as_failure=False)
    if isinstance(exc, Forbidden | Invalid | NotFound | Gone):
        first, cap = PERMANENT_BACKOFF
        what = type(exc).__name__
        fix = {
            "Forbidden": "grant the permission (the chart's RBAC lists what ptc needs)",
            "Unauthorized": "check the service account's token",
            "Invalid": "the object or the config makes the write invalid",
            "NotFound": "the object is gone",
            "Gone": "the object's version is too old",
        }.get(what, "")
        if isinstance(exc, Forbidden) and admission_refused(exc.message):
            fix = (
                "an admission policy or webhook refused it (named above): exempt ptc's "
                "ServiceAccount or let the change through (the chart's claim guard admits only "
                "the ptc.dev/claim annotation)"
            )
        return AfterError(
            min(first * 2 ** (failures - 1), cap),
            f"the API server refused a request ({what}): {exc.message}; {fix} — ptc tries "
            f"again every {first:.0f}s to {cap / 60:.0f}m meanwhile",
        )
    first, cap = TRANSIENT_BACKOFF
    return AfterError(min(first * 2 ** (failures - 1), cap))


__all__ = ["AfterError", "after_api_error"]
