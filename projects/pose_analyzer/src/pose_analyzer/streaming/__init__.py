"""Live camera streams: latest-frame-wins slots, cross-stream batching, stream lifecycle."""

from pose_analyzer.streaming.batcher import DetectionBatcher
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
    "DetectionBatcher",
    "FrameTooLargeError",
    "LatestSlot",
    "ServerFailureError",
    "SlotClosedError",
    "StreamClosedError",
    "StreamHub",
    "StreamPolicyError",
    "UnsupportedFrameError",
]
