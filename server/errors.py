"""The server's exception family, and the one table that maps each to an HTTP status.

Handlers raise these; the error middleware in ``server.app`` turns them into
``{"error": CODE, "detail": ...}`` replies. Nothing else chooses a status code.
"""

from __future__ import annotations


class ServerError(Exception):
    """Root of every error the server raises on purpose."""

    status = 500
    code = "internal"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ConfigError(ServerError):
    """A setting is missing or wrong; the message names it."""

    code = "config"


class BadRequest(ServerError):
    status = 400
    code = "bad_request"


class Unauthorized(ServerError):
    status = 401
    code = "unauthorized"


class Forbidden(ServerError):
    status = 403
    code = "forbidden"


class NotFound(ServerError):
    status = 404
    code = "not_found"


class Conflict(ServerError):
    status = 409
    code = "conflict"


class PayloadTooLarge(ServerError):
    status = 413
    code = "payload_too_large"


class Unprocessable(ServerError):
    status = 422
    code = "invalid"


class RateLimited(ServerError):
    status = 429
    code = "rate_limited"

    def __init__(self, detail: str, retry_after_s: float) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class Unavailable(ServerError):
    status = 503
    code = "unavailable"


class StorageUnavailable(Unavailable):
    """The result store cannot be reached or refused a write: nothing was stored."""

    code = "storage_unavailable"


class RequestTimeout(Unavailable):
    code = "timeout"
