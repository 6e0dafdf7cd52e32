"""Live camera streams: latest-frame-wins slots, stream lifecycle, the database writer."""

from pose_analyzer.streaming.errors import (
    FrameTooLargeError,
    ServerFailureError,
    StreamClosedError,
    StreamPolicyError,
    UnsupportedFrameError,
)
from pose_analyzer.streaming.hub import StreamHub
from pose_analyzer.streaming.slot import LatestSlot, SlotClosedError

__all__ = [
    "FrameTooLargeError",
    "LatestSlot",
    "ServerFailureError",
    "SlotClosedError",
    "StreamClosedError",
    "StreamHub",
    "StreamPolicyError",
    "UnsupportedFrameError",
]
