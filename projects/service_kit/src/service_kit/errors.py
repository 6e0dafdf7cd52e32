"""Domain errors defined once, each carrying its code, HTTP status and WebSocket close code,
and mapped to one error body in one place.

Every 4xx/5xx answer of both services, and every ``error`` message or close of a WebSocket,
carries the same body ``{"error": {"code": "...", "message": "...", "details": ...}}``
(a WebSocket message adds ``"type": "error"`` beside it).  An unexpected exception is logged
with a request id and the client gets a generic message naming that id, never the
exception's text.

Nothing here imports FastAPI at module level: domain modules raise these errors without
knowing the web framework; ``install_error_handlers`` wires them into an app.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger(__name__)

# WebSocket close codes (RFC 6455) the services use.
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_POLICY_VIOLATION = 1008
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011

REQUEST_ID_HEADER = "X-Request-ID"


class ServiceError(Exception):
    """Base of the errors a service raises on purpose.

    Subclasses set ``status_code`` (HTTP), ``close_code`` (WebSocket, when the error ends a
    stream) and ``code``; an instance may override ``code`` for a finer reason.
    """

    status_code = 400
    close_code = CLOSE_POLICY_VIOLATION
    code = "bad_request"

    def __init__(self, message: str, details: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code

    def body(self) -> dict[str, Any]:
        """The error body clients get for this error."""
        return error_body(self.code, self.message, self.details)


class NotFoundError(ServiceError):
    status_code = 404
    code = "not_found"


class ConflictError(ServiceError):
    status_code = 409
    code = "conflict"


class UnauthorizedError(ServiceError):
    status_code = 401
    code = "unauthorized"


class UnavailableError(ServiceError):
    status_code = 503
    close_code = CLOSE_INTERNAL_ERROR
    code = "unavailable"


class InvalidInputError(ServiceError):
    """Well-formed but unacceptable input (an unknown name, an empty upload)."""

    status_code = 422
    code = "invalid_input"


class PayloadTooLargeError(ServiceError):
    status_code = 413
    close_code = CLOSE_MESSAGE_TOO_BIG
    code = "payload_too_large"


class UnsupportedMediaTypeError(ServiceError):
    status_code = 415
    close_code = CLOSE_UNSUPPORTED_DATA
    code = "unsupported_media_type"


class InternalError(ServiceError):
    """The service's own failure, reported with a generic message (details go to the log)."""

    status_code = 500
    close_code = CLOSE_INTERNAL_ERROR
    code = "internal_error"


def error_body(code: str, message: str, details: Any = None, request_id: str | None = None) -> dict[str, Any]:
    """The one error body of HTTP answers and WebSocket ``error`` messages."""
    error: dict[str, Any] = {"code": code, "message": message, "details": details}
    if request_id is not None:
        error["request_id"] = request_id
    return {"error": error}


def unexpected_error(exc: BaseException, where: str) -> tuple[str, dict[str, Any]]:
    """Log an unexpected exception under a new request id; returns the id and the generic body."""
    request_id = uuid.uuid4().hex
    log.error(
        "unhandled error on %s",
        where,
        exc_info=(type(exc), exc, exc.__traceback__),
        extra={"request_id": request_id},
    )
    message = f"internal error of the service (request id {request_id})"
    return request_id, error_body(InternalError.code, message, request_id=request_id)


def install_error_handlers(app: FastAPI) -> None:
    """Map ServiceError, HTTP errors, validation errors and anything unexpected to the error body."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status_code)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}.get(
            exc.status_code, "http_error"
        )
        return JSONResponse(
            error_body(code, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        return JSONResponse(
            error_body("validation_error", f"{where}: {first['msg']}", errors), status_code=422
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        request_id, body = unexpected_error(exc, f"{request.method} {request.url.path}")
        return JSONResponse(body, status_code=500, headers={REQUEST_ID_HEADER: request_id})
