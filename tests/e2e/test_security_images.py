"""Image bounds attacked through a real pose_analyzer process: a decompression bomb and a cut JPEG,
over a WebSocket stream and POST /api/analyze; the process's peak RSS (VmHWM) must not move."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.e2e.harness import RunningService, StartService
from tests.unit.pose_analyzer.test_image_bounds import bomb_png, cut_with_end_marker

IMAGES = Path(__file__).resolve().parents[1] / "data" / "images"


def peak_rss_mib(service: RunningService) -> float:
    """The process's high-water mark of resident memory (Linux VmHWM)."""
    for line in Path(f"/proc/{service.process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def close_after_sending(url: str, data: bytes) -> tuple[int, str]:
    with connect(url, open_timeout=30, close_timeout=10, max_size=None) as ws:
        ws.send(data)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=60)
    rcvd = closed.value.rcvd
    assert rcvd is not None
    return rcvd.code, rcvd.reason


def post_image(url: str, data: bytes, filename: str) -> tuple[int, dict[str, object]]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"{url}/api/analyze", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return int(resp.status), json.load(resp)
    except urllib.error.HTTPError as err:
        return int(err.code), json.load(err)


def test_bombs_and_cut_jpegs_are_refused_by_a_real_service(
    start_service: StartService, tmp_path: Path
) -> None:
    service = start_service(
        "pose_analyzer", "POSE_", backend="mediapipe", database_url=f"sqlite:///{tmp_path}/pose.db"
    )
    ws = service.url.replace("http://", "ws://")
    bomb = bomb_png()
    cut = cut_with_end_marker((IMAGES / "bus.jpg").read_bytes(), 1 / 3)
    # Warm up both paths with a whole image first (the first stream sets up its detector).
    whole = (IMAGES / "mediapipe_pose_test_image.jpg").read_bytes()
    whole_status, answer = post_image(service.url, whole, "a.jpg")
    assert whole_status == 200, answer
    for i in range(2):  # a stream's detector may still be closing when the next one opens
        with connect(f"{ws}/ws/streams/warm{i}", open_timeout=30) as conn:
            conn.send(whole)
            assert json.loads(conn.recv(timeout=60))["type"] == "frame"
    before = peak_rss_mib(service)

    for i in range(3):
        code, reason = close_after_sending(f"{ws}/ws/streams/bomb{i}", bomb)
        assert code == 1009
        assert reason.startswith("the image declares 20000x20000 pixels")
    for _ in range(2):
        status, body = post_image(service.url, bomb, "bomb.png")
        assert status == 413, body
    code, reason = close_after_sending(f"{ws}/ws/streams/cut", cut)
    assert (code, reason.split(":")[0]) == (1003, "truncated JPEG")
    status, body = post_image(service.url, cut, "cut.jpg")
    assert status == 415, body
    assert "truncated JPEG" in str(body)

    growth = peak_rss_mib(service) - before
    # One decode of the bomb would take 20000 * 20000 * 3 bytes = 1144 MiB; the streams opened on
    # the way (a detector each) cost 20-110 MiB, so half a decode separates the two with margin.
    assert growth < 1144 / 2, f"peak RSS grew by {growth:.0f} MiB"
    with urllib.request.urlopen(f"{service.url}/metrics", timeout=10) as resp:
        assert 'pose_stream_websocket_errors_total{reason="image_too_large"} 3.0' in resp.read().decode()
