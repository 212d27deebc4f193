"""Kubernetes API errors as one hierarchy, translated from kr8s/httpx at the adapter boundary.

::

    KubeError                 any failure talking to the API server (base class)
    ├── NotFound              404: the object (or the resource type) does not exist
    ├── Conflict              409: stale resourceVersion precondition, or AlreadyExists on create
    ├── Forbidden             403: RBAC denies the request
    │   └── Unauthorized      401: the credentials were rejected
    ├── Invalid               422/400: the server rejected the object or the request
    ├── Gone                  410: the resourceVersion is too old (watch/list continue expired)
    ├── NotLeader             a write refused locally: this process may no longer write (fencing)
    └── Unavailable           5xx, 429, transport errors and timeouts: worth retrying

Only :class:`Unavailable` is retried (by :class:`~controller.shell.kube.client.Kube`, once). Every
error keeps the underlying kr8s/httpx exception as ``__cause__``; none of those escape the adapter.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import kr8s


class KubeError(Exception):
    """A failed Kubernetes API call; ``status`` is the HTTP code, ``reason`` the Status reason."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        reason: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


class NotFound(KubeError):
    """404: the object does not exist."""


class Conflict(KubeError):
    """409: someone else changed the object first (or it already exists); re-read and retry."""


class Forbidden(KubeError):
    """403: the service account lacks a permission (see ``controller.shell.kube.PERMISSIONS``)."""


class Unauthorized(Forbidden):
    """401: the credentials were not accepted."""


class Invalid(KubeError):
    """422/400: the request or the object was rejected as malformed."""


class Gone(KubeError):
    """410: the requested resourceVersion is no longer available; list again."""


class NotLeader(KubeError):
    """A write not sent (or cut short) because this process's leadership ran out."""


class Unavailable(KubeError):
    """The server could not answer now (5xx, 429, connection or timeout): retry later."""


_BY_STATUS: dict[int, type[KubeError]] = {
    400: Invalid,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    422: Invalid,
    429: Unavailable,
}


def error_for_status(
    code: int, message: str, reason: str | None = None, retry_after: float | None = None
) -> KubeError:
    """The KubeError subclass instance for an HTTP status code."""
    cls = _BY_STATUS.get(code) or (Unavailable if code >= 500 else KubeError)
    return cls(message, status=code, reason=reason, retry_after=retry_after)


def _retry_after(response: httpx.Response | None) -> float | None:
    if response is None:
        return None
    try:
        return float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None


def translate(exc: BaseException, what: str) -> KubeError:
    """Map a kr8s/httpx/asyncio exception raised while doing ``what`` to a KubeError.

    ``what`` names the request, e.g. ``"patch services default/web"``; it prefixes the message.
    The caller raises the result ``from exc`` so the cause stays attached.
    """
    if isinstance(exc, KubeError):
        return exc
    if isinstance(exc, kr8s.ServerError):
        response = exc.response
        code = response.status_code if response is not None else 0
        status: Any = exc.status
        reason = status.get("reason") if isinstance(status, dict) else None
        detail = status.get("message") if isinstance(status, dict) else None
        message = f"{what}: {detail or exc}"
        return error_for_status(code, message, reason, _retry_after(response))
    if isinstance(exc, httpx.HTTPStatusError):
        return error_for_status(
            exc.response.status_code, f"{what}: {exc}", None, _retry_after(exc.response)
        )
    if isinstance(
        exc, kr8s.APITimeoutError | httpx.TimeoutException | TimeoutError | asyncio.TimeoutError
    ):
        return Unavailable(f"{what}: timed out")
    if isinstance(exc, httpx.TransportError | kr8s.ConnectionClosedError | ConnectionError):
        return Unavailable(f"{what}: {type(exc).__name__}: {exc}")
    if isinstance(exc, json.JSONDecodeError):
        return KubeError(f"{what}: the server's answer is not JSON: {exc}")
    return KubeError(f"{what}: {type(exc).__name__}: {exc}")
