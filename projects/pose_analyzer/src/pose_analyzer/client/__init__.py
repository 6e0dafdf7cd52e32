"""The camera client: stream webcams, RTSP/HTTP cameras or video files to a pose_analyzer service.

Used by ``pose-analyzer stream``, the tests and the fleet benchmark::

    config = ClientConfig("ws://127.0.0.1:8001", exercise="squat")
    session = CameraSession(config, {"front": FrameSource("0"), "side": FrameSource("rtsp://...")})
    stats = await session.run(stop_event)
"""

from pose_analyzer.client.session import CameraSession, open_session
from pose_analyzer.client.sources import EncodedFrame, FrameSource, SourceError
from pose_analyzer.client.stats import StreamStats, ToldRep
from pose_analyzer.client.stream import ClientConfig, StreamClient, StreamFailedError, retryable

__all__ = [
    "CameraSession",
    "ClientConfig",
    "EncodedFrame",
    "FrameSource",
    "SourceError",
    "StreamClient",
    "StreamFailedError",
    "StreamStats",
    "ToldRep",
    "open_session",
    "retryable",
]
