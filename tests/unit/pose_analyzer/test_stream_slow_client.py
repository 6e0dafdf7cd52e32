"""The slow-client policy of a stream connection: a client past the server's read deadline, or one
whose sends block past the send timeout, is closed with 1008 and counted ``slow_client``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import cv2
from prometheus_client import CollectorRegistry

from pose_analyzer.detection.options import DetectorOptions
from pose_analyzer.metrics import StreamMetrics
from pose_analyzer.settings import PoseSettings
from pose_analyzer.streaming.connection import StreamConnection
from pose_analyzer.streaming.hub import StreamHub


class StuckClient:
    """A client that sends one frame and then never reads: every send blocks."""

    def __init__(self, frame: bytes) -> None:
        self.frames = [frame]
        self.closed: tuple[int, str] | None = None
        self.sent = 0

    async def receive(self) -> str | bytes | None:
        if self.frames:
            return self.frames.pop()
        await asyncio.Event().wait()  # the client stays connected, silent
        return None

    async def send_text(self, text: str) -> None:
        self.sent += 1
        await asyncio.Event().wait()

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    async def stalled(self) -> None:
        await asyncio.Event().wait()  # no read deadline: the send timeout alone notices


class StalledClient(StuckClient):
    """Its sends go into buffers that never fill, but the server's read deadline expires."""

    def __init__(self, frame: bytes, after_s: float) -> None:
        super().__init__(frame)
        self.after_s = after_s

    async def send_text(self, text: str) -> None:
        self.sent += 1

    async def stalled(self) -> None:
        await asyncio.sleep(self.after_s)


async def test_a_client_past_its_read_deadline_is_closed_with_1008_though_sends_do_not_block(
    tmp_path: Path, test_data: Path
) -> None:
    settings = PoseSettings(log_dir=tmp_path, backend="mediapipe", stream_send_timeout_s=30)
    registry = CollectorRegistry()
    hub = StreamHub(
        settings, StreamMetrics(registry), "mediapipe", DetectorOptions.from_settings(settings, "cpu")
    )
    image = cv2.imread(str(test_data / "images/mediapipe_pose_test_image.jpg"))
    client = StalledClient(cv2.imencode(".jpg", image)[1].tobytes(), after_s=0.5)
    connection = StreamConnection(hub, settings, None, "stalled", client)
    await asyncio.wait_for(connection.serve(authorised=True), 20)  # far below the 30 s send timeout
    await hub.close()
    assert client.closed == (1008, "the client did not read its answers for 30 s")
    assert registry.get_sample_value("pose_stream_websocket_errors_total", {"reason": "slow_client"}) == 1
    assert hub.active == 0


async def test_a_client_that_never_reads_is_closed_with_1008(tmp_path: Path, test_data: Path) -> None:
    settings = PoseSettings(log_dir=tmp_path, backend="mediapipe", stream_send_timeout_s=0.3)
    registry = CollectorRegistry()
    hub = StreamHub(
        settings, StreamMetrics(registry), "mediapipe", DetectorOptions.from_settings(settings, "cpu")
    )
    image = cv2.imread(str(test_data / "images/mediapipe_pose_test_image.jpg"))
    client = StuckClient(cv2.imencode(".jpg", image)[1].tobytes())
    connection = StreamConnection(hub, settings, None, "stuck", client)
    await asyncio.wait_for(connection.serve(authorised=True), 60)
    await hub.close()
    assert client.sent == 1
    assert client.closed is not None
    assert client.closed[0] == 1008
    assert "did not read" in client.closed[1]
    assert registry.get_sample_value("pose_stream_websocket_errors_total", {"reason": "slow_client"}) == 1
    assert hub.active == 0
