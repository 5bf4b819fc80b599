"""The server's exception family, and the one table that maps each to an HTTP status.

Handlers raise these; the error middleware in ``server.app`` turns them into
``{"error": CODE, "detail": ...}`` replies (``error_response``), and so does the connection
layer (``server.connection``) for what aiohttp answers before any handler runs. Nothing else
chooses a status code.
"""

from __future__ import annotations

from aiohttp import web

from server.schemas import ErrorReply

#: Codes for the statuses aiohttp answers by itself (unknown route, wrong method, body over
#: client_max_size, a request it cannot parse...).
AIOHTTP_CODES = {
    400: "bad_request", 404: "not_found", 405: "method_not_allowed", 408: "header_timeout",
    413: "payload_too_large", 415: "unsupported_media_type", 431: "bad_request",
}  # fmt: skip


def error_response(status: int, code: str, detail: object, **headers: str) -> web.Response:
    """The JSON reply of every error: ``{"error": CODE, "detail": ...}``."""
    body = ErrorReply(error=code, detail=detail).model_dump(mode="json")
    return web.json_response(body, status=status, headers=headers or None)


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


class DiskFull(Unavailable):
    """``data_dir``'s disk is (nearly) full: writes fail or soon will."""

    code = "disk_full"


class WritesFailing(Unavailable):
    """The store answers, but its last write failed and none succeeded since."""

    code = "writes_failing"
