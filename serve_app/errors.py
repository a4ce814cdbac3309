"""The project's exceptions.

Every error a client can cause is a :class:`BanditServeError` that carries the HTTP status
and a message the client can act on; the router turns it into a JSON response, never a bare
500 with a traceback. Configuration mistakes are :class:`ConfigError` and stop the app at
startup.

Exception tree::

    BanditServeError            (status 500: only for bugs; never raised on purpose)
    ├── InvalidRequest          422  a field has the wrong type, shape or value
    ├── PayloadTooLarge         413  body, batch or feature count over the configured limit
    ├── InvalidDecision         400  a decision id that is not one of ours (malformed)
    ├── InvalidHost             400  a Host header outside the allow-list (DNS rebinding)
    ├── Unauthorized            401  no bearer token where one is required
    ├── Forbidden               403  a bearer token that is not accepted, or a disabled endpoint
    ├── ForgedDecision          403  a decision id whose signature does not verify
    ├── NotFound                404  unknown experiment
    ├── DuplicateFeedback       409  feedback for a decision that already has some
    ├── Conflict                409  a control action that does not apply in the current state
    ├── ExpiredDecision         410  feedback after the attribution window
    ├── UnsupportedMediaType    415  a body that is not JSON where JSON is expected
    └── Unavailable             503  a dependency is down; safe to retry
    ConfigError (ValueError)         invalid app config, raised at startup
"""

from __future__ import annotations

from typing import Any, ClassVar


class BanditServeError(Exception):
    """Root of the errors that reach a client: an HTTP status and an actionable message."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, field: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.extra = extra

    def to_json(self) -> dict[str, Any]:
        """The response body: ``{"error": code, "message": ..., "field": ...}``."""
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        body.update(self.extra)
        return body


class InvalidRequest(BanditServeError):
    status = 422
    code = "invalid_request"


class PayloadTooLarge(BanditServeError):
    status = 413
    code = "payload_too_large"


class InvalidDecision(BanditServeError):
    status = 400
    code = "invalid_decision_id"


class Unauthorized(BanditServeError):
    status = 401
    code = "unauthorized"


class Forbidden(BanditServeError):
    status = 403
    code = "forbidden"


class Conflict(BanditServeError):
    status = 409
    code = "conflict"


class ForgedDecision(BanditServeError):
    status = 403
    code = "forged_decision_id"


class NotFound(BanditServeError):
    status = 404
    code = "not_found"


class DuplicateFeedback(BanditServeError):
    status = 409
    code = "duplicate_feedback"


class InvalidHost(BanditServeError):
    status = 400
    code = "invalid_host"


class UnsupportedMediaType(BanditServeError):
    status = 415
    code = "unsupported_media_type"


class ExpiredDecision(BanditServeError):
    status = 410
    code = "expired_decision_id"


class Unavailable(BanditServeError):
    status = 503
    code = "unavailable"


class ConfigError(ValueError):
    """The app config is invalid; the message names each offending path."""
