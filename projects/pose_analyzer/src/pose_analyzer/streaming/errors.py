"""Why a stream is closed: each error carries its WebSocket close code and a metric reason.

The codes are the protocol's (RFC 6455): 1003 unsupported data, 1008 policy violation,
1009 message too big, 1011 the server's own failure.  Nothing here knows FastAPI.
"""

from __future__ import annotations


class StreamClosedError(Exception):
    """A stream must end; ``close_code`` and ``str(self)`` (the reason) go to the client."""

    close_code = 1011
    metric_reason = "internal"

    def __init__(self, message: str, metric_reason: str | None = None) -> None:
        super().__init__(message)
        if metric_reason is not None:
            self.metric_reason = metric_reason


class UnsupportedFrameError(StreamClosedError):
    """A binary message that is not a decodable JPEG/PNG image (1003)."""

    close_code = 1003
    metric_reason = "bad_image"


class FrameTooLargeError(StreamClosedError):
    """A frame over the configured byte limit (1009)."""

    close_code = 1009
    metric_reason = "frame_too_large"


class StreamPolicyError(StreamClosedError):
    """Refused by policy: API key, stream limit, stream id, a client that never reads (1008)."""

    close_code = 1008
    metric_reason = "policy"


class ServerFailureError(StreamClosedError):
    """Our own failure (a detector that cannot start or crashed) (1011)."""

    close_code = 1011
    metric_reason = "internal"
