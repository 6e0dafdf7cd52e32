"""A real client socket that stops reading its answers is closed (1008) by a real service within
the send timeout plus the time its few buffered answers take to fill the (small) socket buffers."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time
import urllib.request
from pathlib import Path

from tests.api.test_streams import metric
from tests.e2e.harness import StartService
from tests.e2e.test_pose_streams import encoded_frames

SEND_TIMEOUT_S = 1.0
# Generous for a loaded machine, far below the ~40 s (two keepalive ping periods) it took before.
CUT_WITHIN_S = 15.0


def handshake(port: int, path: str) -> socket.socket:
    """Open a WebSocket by hand on a plain socket (so nothing reads it behind the test's back)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)  # byte by byte: nothing after the handshake is read
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (RFC 6455 section 5.2)."""
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


def test_a_client_that_stops_reading_is_closed_with_1008_within_the_send_timeout(
    start_service: StartService, tmp_path: Path, test_data: Path
) -> None:
    clip = encoded_frames(test_data / "videos/squat_8reps.mp4", step=3)
    service = start_service(
        "pose_analyzer",
        "POSE_",
        backend="mediapipe",
        database_url=f"sqlite:///{tmp_path / 'pose.db'}",
        stream_send_timeout_s=str(SEND_TIMEOUT_S),
    )
    port = int(service.url.rsplit(":", 1)[1])
    sock = handshake(port, "/ws/streams/deaf")
    started = time.monotonic()
    cut_after: float | None = None
    sent = 0
    try:
        while time.monotonic() - started < 60:
            data = clip[sent % len(clip)][1]
            header = json.dumps({"type": "frame", "capture_ts": sent / 10.0}).encode()
            sock.sendall(frame(0x1, header) + frame(0x2, data))
            sent += 1
            time.sleep(0.03)  # a camera's pace
            with urllib.request.urlopen(f"{service.url}/metrics", timeout=10) as resp:
                text = resp.read().decode()
            if metric(text, "pose_stream_websocket_errors_total", reason="slow_client") >= 1:
                cut_after = time.monotonic() - started
                break
    except OSError:  # the server gave up on the connection first
        cut_after = time.monotonic() - started
    finally:
        sock.close()
    assert cut_after is not None, "a client that never reads was not closed in 60 s"
    assert cut_after < CUT_WITHIN_S, f"closed only after {cut_after:.1f} s ({sent} frames sent)"
