"""Why a stream is closed: each error carries its code, HTTP status and WebSocket close code.

They are ``ServiceError``s (``service_kit.errors``), so the same failure reads the same
over HTTP (``POST /api/analyze`` refuses an undecodable image with 415
``unsupported_image``) and over the WebSocket (closed with 1003, reason and code alike).
The close codes are the protocol's (RFC 6455): 1003 unsupported data, 1008 policy
violation, 1009 message too big, 1011 the server's own failure, 1012 service restart, 1013 try
again later.  Nothing here knows FastAPI.
"""

from __future__ import annotations

from service_kit.errors import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_POLICY_VIOLATION,
    CLOSE_UNSUPPORTED_DATA,
    ServiceError,
)


class StreamClosedError(ServiceError):
    """A stream must end; ``close_code`` and ``str(self)`` (the reason) go to the client.

    ``code`` (default per class, or given) is also the ``reason`` label of the WebSocket error
    metric.
    """

    status_code = 500
    close_code = CLOSE_INTERNAL_ERROR
    code = "internal"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message, code=code)

    @property
    def metric_reason(self) -> str:
        return self.code


class UnsupportedFrameError(StreamClosedError):
    """A binary message that is not a decodable JPEG/PNG image (415, 1003)."""

    status_code = 415
    close_code = CLOSE_UNSUPPORTED_DATA
    code = "bad_image"


class FrameTooLargeError(StreamClosedError):
    """A frame over the configured byte limit (413, 1009)."""

    status_code = 413
    close_code = CLOSE_MESSAGE_TOO_BIG
    code = "frame_too_large"


class StreamPolicyError(StreamClosedError):
    """Refused by policy: API key, stream limit, stream id, a client that never reads (1008)."""

    status_code = 403
    close_code = CLOSE_POLICY_VIOLATION
    code = "policy"


class ServerFailureError(StreamClosedError):
    """Our own failure (a detector that cannot start or crashed) (503, 1011)."""

    status_code = 503
    close_code = CLOSE_INTERNAL_ERROR
    code = "internal"


class StorageFailedError(StreamClosedError):
    """What the stream produced could not be committed, even after retries (503, 1011)."""

    status_code = 503
    close_code = CLOSE_INTERNAL_ERROR
    code = "storage_failed"


class InvalidCaptureTimeError(StreamPolicyError):
    """A ``capture_ts`` that is not finite, out of range or earlier than the previous one (400, 1008):
    the client's fault, counted as such."""

    status_code = 400
    code = "invalid_capture_ts"


# RFC 6455 "service restart": the client may reconnect once the service is back.
CLOSE_SERVICE_RESTART = 1012


class ServiceRestartError(StreamClosedError):
    """The service is stopping (SIGTERM): the stream is recorded as interrupted (503, 1012)."""

    status_code = 503
    close_code = CLOSE_SERVICE_RESTART
    code = "service_restart"


# RFC 6455 "try again later": this replica takes no new streams; another one (or this one once
# restarted) will.
CLOSE_TRY_AGAIN_LATER = 1013


class ServiceUnavailableError(StreamClosedError):
    """A new stream refused before anything is recorded: the service is draining (SIGTERM) or its
    models could not be loaded (503, 1013); the client reconnects, through the balancer elsewhere."""

    status_code = 503
    close_code = CLOSE_TRY_AGAIN_LATER
    code = "unavailable"


class ClientGoneError(Exception):
    """The connection is gone (the client left, or the server dropped it): nothing can be sent on
    it any more.  Not the stream's failure: it ends as when the client disconnects."""
