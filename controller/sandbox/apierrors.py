"""API errors as real ``metav1.Status`` objects, built like ``k8s.io/apimachinery/pkg/api/errors``.

Every failure the sandbox reports is an :class:`ApiError`; the HTTP layer serialises
``error.status`` with ``error.code``. Messages follow the real server's wording so that clients
(and people reading test failures) see what a cluster would have said.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldError:
    """One validation failure, rendered like ``field.Error`` (``spec.replicas: Invalid value``)."""

    field: str
    type: str  # FieldValueInvalid, FieldValueRequired, FieldValueForbidden, ...
    detail: str
    value: Any = None

    def message(self) -> str:
        """The cause message the real server puts into ``details.causes[].message``."""
        if self.type == "FieldValueRequired":
            return f"Required value{': ' + self.detail if self.detail else ''}"
        if self.type == "FieldValueForbidden":
            return f"Forbidden: {self.detail}"
        if self.type == "FieldValueTooLong":
            return f"Too long: {self.detail}"
        if self.type == "FieldValueNotSupported":
            return f"Unsupported value: {_go_repr(self.value)}: {self.detail}"
        return f"Invalid value: {_go_repr(self.value)}: {self.detail}"


def _go_repr(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class ApiError(Exception):
    """An error answer of the API server: HTTP ``code`` and a ``Status`` body."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    @property
    def status(self) -> dict[str, Any]:
        """The ``metav1.Status`` body."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def _qualified(group: str, resource: str) -> str:
    return f"{resource}.{group}" if group else resource


def _details(group: str, kind: str, name: str | None = None) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    details["kind"] = kind
    return details


def not_found(group: str, resource: str, name: str) -> ApiError:
    """404: ``deployments.apps "x" not found``."""
    return ApiError(
        404,
        "NotFound",
        f'{_qualified(group, resource)} "{name}" not found',
        _details(group, resource, name),
    )


def already_exists(group: str, resource: str, name: str) -> ApiError:
    """409 AlreadyExists: ``pods "x" already exists``."""
    return ApiError(
        409,
        "AlreadyExists",
        f'{_qualified(group, resource)} "{name}" already exists',
        _details(group, resource, name),
    )


def conflict(group: str, resource: str, name: str) -> ApiError:
    """409 Conflict for a failed optimistic-concurrency precondition."""
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(group, resource)} "{name}": the object has '
        "been modified; please apply your changes to the latest version and try again",
        _details(group, resource, name),
    )


def uid_conflict(resource: str, name: str, given: str, actual: str) -> ApiError:
    """409 Conflict for a UID precondition (update or delete) that names another object."""
    return ApiError(
        409,
        "Conflict",
        f"Precondition failed: UID in precondition: {given}, UID in object meta: {actual}",
        {"name": name, "kind": resource},
    )


def invalid(group: str, kind: str, name: str, errors: list[FieldError]) -> ApiError:
    """422 Invalid with one cause per field error, as ``errors.NewInvalid`` builds it."""
    causes = [{"reason": e.type, "message": e.message(), "field": e.field} for e in errors]
    summary = "; ".join(f"{e.field}: {e.message()}" for e in errors)
    if len(errors) > 1:
        summary = f"[{', '.join(f'{e.field}: {e.message()}' for e in errors)}]"
    qualified_kind = f"{kind}.{group}" if group else kind
    details = _details(group, kind, name)
    details["causes"] = causes
    return ApiError(422, "Invalid", f'{qualified_kind} "{name}" is invalid: {summary}', details)


def unprocessable(message: str) -> ApiError:
    """422 from a patch that does not apply (``NewGenericServerResponse(422, ...)``)."""
    return ApiError(
        422,
        "Invalid",
        "the server rejected our request due to an error in our request",
        {"causes": [{"reason": "UnexpectedServerResponse", "message": message}]},
    )


def bad_request(message: str) -> ApiError:
    """400 BadRequest."""
    return ApiError(400, "BadRequest", message)


def gone(message: str) -> ApiError:
    """410 Expired: the requested resourceVersion was compacted away."""
    return ApiError(410, "Expired", message)


def method_not_allowed() -> ApiError:
    """405 for a verb the resource does not support."""
    return ApiError(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
        {},
    )


def unsupported_media_type(content_type: str, accepted: list[str]) -> ApiError:
    """415 for an unknown PATCH content type."""
    return ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        + ", ".join(accepted),
        {},
    )


def forbidden(
    user: str,
    verb: str,
    group: str,
    resource: str,
    subresource: str,
    namespace: str,
    name: str | None,
) -> ApiError:
    """403 like the RBAC authorizer: ``pods is forbidden: User "x" cannot list resource ...``."""
    what = f"{resource}/{subresource}" if subresource else resource
    subject = f'{_qualified(group, resource)} "{name}"' if name else _qualified(group, resource)
    where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
    message = (
        f'{subject} is forbidden: User "{user}" cannot {verb} resource "{what}" '
        f'in API group "{group}"{where}'
    )
    return ApiError(403, "Forbidden", message, _details(group, resource, name))


def unauthorized() -> ApiError:
    """401 for an unknown bearer token."""
    return ApiError(401, "Unauthorized", "Unauthorized")


def internal(message: str) -> ApiError:
    """500 InternalError."""
    return ApiError(
        500,
        "InternalError",
        f"Internal error occurred: {message}",
        {"causes": [{"message": message}]},
    )


def too_many_requests(retry_after: int) -> ApiError:
    """429 like API Priority and Fairness rejecting a request."""
    return ApiError(
        429,
        "TooManyRequests",
        "Too many requests, please try again later.",
        {"retryAfterSeconds": retry_after},
        headers={"Retry-After": str(retry_after)},
    )
