"""One typed error hierarchy, shared by the server and the client.

Each error has a stable ``code`` (the string in ``{"error": {"code": ...}}``) and
one HTTP status; gRPC codes are mapped from the same table. The client turns an
error response back into the same class, so a caller can ``except NotFound``
whichever transport carried the request.
"""

from __future__ import annotations

from typing import Any


class AkiError(Exception):
    """Root of every error the server answers with and the client raises."""

    code = "internal"
    http_status = 500
    grpc_status = "INTERNAL"  # a grpc.StatusCode name; kept as text so no grpc import

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return {"error": body}


class BadRequest(AkiError):
    code = "bad_request"
    http_status = 400
    grpc_status = "INVALID_ARGUMENT"


class Unauthenticated(AkiError):
    code = "unauthenticated"
    http_status = 401
    grpc_status = "UNAUTHENTICATED"


class PermissionDenied(AkiError):
    code = "permission_denied"
    http_status = 403
    grpc_status = "PERMISSION_DENIED"


class NotFound(AkiError):
    code = "not_found"
    http_status = 404
    grpc_status = "NOT_FOUND"


class MethodNotAllowed(AkiError):
    code = "method_not_allowed"
    http_status = 405
    grpc_status = "UNIMPLEMENTED"


class AlreadyExists(AkiError):
    code = "already_exists"
    http_status = 409
    grpc_status = "ALREADY_EXISTS"


class PayloadTooLarge(AkiError):
    code = "payload_too_large"
    http_status = 413
    grpc_status = "RESOURCE_EXHAUSTED"


class Unprocessable(AkiError):
    """Well-formed request whose content cannot be applied (wrong dimension, NaN)."""

    code = "unprocessable"
    http_status = 422
    grpc_status = "INVALID_ARGUMENT"


class QuotaExceeded(AkiError):
    code = "quota_exceeded"
    http_status = 429
    grpc_status = "RESOURCE_EXHAUSTED"


class Unavailable(AkiError):
    code = "unavailable"
    http_status = 503
    grpc_status = "UNAVAILABLE"


class Internal(AkiError):
    code = "internal"
    http_status = 500
    grpc_status = "INTERNAL"


class TransportError(AkiError):
    """The client could not reach the server or the connection broke mid-request.

    Whether the request was applied is unknown: callers that need certainty
    treat the outcome as indeterminate.
    """

    code = "transport_error"
    http_status = 0
    grpc_status = "UNAVAILABLE"


class StartupError(Exception):
    """The server cannot start as configured (data directory, settings); the message
    names what is wrong and what to do. Not an API error: it never reaches a client."""


ERRORS_BY_CODE: dict[str, type[AkiError]] = {
    cls.code: cls
    for cls in (
        BadRequest,
        Unauthenticated,
        PermissionDenied,
        NotFound,
        MethodNotAllowed,
        AlreadyExists,
        PayloadTooLarge,
        Unprocessable,
        QuotaExceeded,
        Unavailable,
        Internal,
    )
}

_BY_STATUS: dict[int, type[AkiError]] = {
    cls.http_status: cls for cls in ERRORS_BY_CODE.values()
}
# For gRPC the exact class travels in trailing metadata; this table is the fallback.
_BY_GRPC: dict[str, type[AkiError]] = {
    "INVALID_ARGUMENT": BadRequest, "UNAUTHENTICATED": Unauthenticated,
    "PERMISSION_DENIED": PermissionDenied, "NOT_FOUND": NotFound,
    "ALREADY_EXISTS": AlreadyExists, "RESOURCE_EXHAUSTED": PayloadTooLarge,
    "UNAVAILABLE": Unavailable, "DEADLINE_EXCEEDED": Unavailable, "INTERNAL": Internal,
}
GRPC_ERROR_CODE_KEY = "akidb-error-code"


def error_from_response(status: int, body: Any) -> AkiError:
    """Rebuild the typed error from an HTTP error response (client side)."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        cls = ERRORS_BY_CODE.get(str(err.get("code")), _BY_STATUS.get(status, AkiError))
        exc = cls(str(err.get("message", "")), details=err.get("details"))
    else:
        cls = _BY_STATUS.get(status, AkiError)
        exc = cls(f"HTTP {status}: {str(body)[:200]}")
    exc.http_status = status
    return exc


def error_from_grpc(status_name: str, message: str, code: str | None) -> AkiError:
    """Rebuild the typed error from a gRPC status (client side)."""
    cls = ERRORS_BY_CODE.get(code or "") or _BY_GRPC.get(status_name, AkiError)
    return cls(message)
