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


class Unauthenticated(AkiError):
    code = "unauthenticated"
    http_status = 401


class PermissionDenied(AkiError):
    code = "permission_denied"
    http_status = 403


class NotFound(AkiError):
    code = "not_found"
    http_status = 404


class MethodNotAllowed(AkiError):
    code = "method_not_allowed"
    http_status = 405


class AlreadyExists(AkiError):
    code = "already_exists"
    http_status = 409


class PayloadTooLarge(AkiError):
    code = "payload_too_large"
    http_status = 413


class Unprocessable(AkiError):
    """Well-formed request whose content cannot be applied (wrong dimension, NaN)."""

    code = "unprocessable"
    http_status = 422


class QuotaExceeded(AkiError):
    code = "quota_exceeded"
    http_status = 429


class Unavailable(AkiError):
    code = "unavailable"
    http_status = 503


class Internal(AkiError):
    code = "internal"
    http_status = 500


class TransportError(AkiError):
    """The client could not reach the server or the connection broke mid-request.

    Whether the request was applied is unknown: callers that need certainty
    treat the outcome as indeterminate.
    """

    code = "transport_error"
    http_status = 0


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
