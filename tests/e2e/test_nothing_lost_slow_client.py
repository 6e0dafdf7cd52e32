"""A real client socket that stops reading its answers is closed (1008) by a real service within the
send timeout plus the ping interval and a stated slack, counted the client's error; a client that
reads in bursts but keeps up is not cut.

The client is a plain socket with a reader thread that answers the service's pings, as a client
library does while it reads; "stops reading" stops that thread, so nothing reads the socket after.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import threading
import time
import urllib.request
from pathlib import Path

from websockets.sync.client import connect

from pose_analyzer.ws_protocol import ping_interval
from tests.api.test_streams import metric
from tests.e2e.harness import RunningService, StartService
from tests.e2e.test_pose_streams import encoded_frames

SEND_TIMEOUT_S = 1.0
# Event-loop and scheduling latency on a loaded two-core machine, plus the metrics poll.
SLACK_S = 1.0
# Before the read deadline it took ~7 s: the socket buffers on both ends absorbed the answers.
CUT_WITHIN_S = SEND_TIMEOUT_S + ping_interval(SEND_TIMEOUT_S) + SLACK_S
OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA


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


def parse_frames(buffer: bytearray) -> list[tuple[int, bytes]]:
    """Take the complete unmasked server frames off the front of ``buffer``: (opcode, payload)."""
    frames = []
    while len(buffer) >= 2:
        size, start = buffer[1] & 0x7F, 2
        if size == 126:
            if len(buffer) < 4:
                break
            (size,), start = struct.unpack("!H", buffer[2:4]), 4
        elif size == 127:
            if len(buffer) < 10:
                break
            (size,), start = struct.unpack("!Q", buffer[2:10]), 10
        if len(buffer) < start + size:
            break
        frames.append((buffer[0] & 0x0F, bytes(buffer[start : start + size])))
        del buffer[: start + size]
    return frames


class Client:
    """A stream client on a plain socket: sends frames at a camera's pace; ``read`` reads answers
    and answers pings until ``stop_reading``, pausing ``pause_s`` between bursts of reading."""

    def __init__(self, service: RunningService, stream_id: str, clip: list[tuple[float, bytes]]) -> None:
        self.sock = handshake(int(service.url.rsplit(":", 1)[1]), f"/ws/streams/{stream_id}")
        self.clip = clip
        self.sent = 0
        self.answers = 0
        self.write_lock = threading.Lock()
        self.reading = threading.Event()
        self.stopped_reading_at = 0.0
        self.reader: threading.Thread | None = None
        self.buffer = bytearray()

    def send_frame(self) -> None:
        data = self.clip[self.sent % len(self.clip)][1]
        header = json.dumps({"type": "frame", "capture_ts": self.sent / 10.0}).encode()
        with self.write_lock:
            self.sock.sendall(frame(OP_TEXT, header) + frame(OP_BINARY, data))
        self.sent += 1

    def start_reading(self, pause_s: float = 0.0) -> None:
        self.reading.set()
        self.reader = threading.Thread(target=self._read, args=(pause_s,), daemon=True)
        self.reader.start()

    def stop_reading(self) -> float:
        """Stop reading; returns when the reader has stopped (the time the client ceased to read)."""
        self.reading.clear()
        assert self.reader is not None
        self.reader.join(timeout=30)
        return self.stopped_reading_at

    def _pump(self) -> list[tuple[int, bytes]]:
        """Read what the socket has (waiting up to its timeout) and return the complete frames."""
        try:
            data = self.sock.recv(1 << 16)
        except TimeoutError:
            return []
        if not data:
            raise ConnectionError("the service closed the connection")
        self.buffer += data
        return parse_frames(self.buffer)

    def _read(self, pause_s: float) -> None:
        self.sock.settimeout(0.05)
        while self.reading.is_set():
            burst_end = time.monotonic() + (0.05 if pause_s else 3600.0)
            while self.reading.is_set() and time.monotonic() < burst_end:
                for opcode, payload in self._pump():
                    if opcode == OP_PING:
                        with self.write_lock:
                            self.sock.sendall(frame(OP_PONG, payload))
                    elif opcode == OP_TEXT:
                        self.answers += 1
            self.stopped_reading_at = time.monotonic()
            if self.reading.is_set():
                time.sleep(pause_s)

    def close_frame(self) -> tuple[int, str]:
        """Read on to the service's close frame: (code, reason)."""
        self.sock.settimeout(10)
        while True:
            for opcode, payload in parse_frames(self.buffer) or self._pump():
                if opcode == OP_CLOSE:
                    return struct.unpack("!H", payload[:2])[0], payload[2:].decode()


def slow_clients(service: RunningService) -> float:
    with urllib.request.urlopen(f"{service.url}/metrics", timeout=10) as resp:
        return metric(resp.read().decode(), "pose_stream_websocket_errors_total", reason="slow_client")


def start(
    start_service: StartService, tmp_path: Path, send_timeout_s: float = SEND_TIMEOUT_S
) -> RunningService:
    return start_service(
        "pose_analyzer",
        "POSE_",
        backend="mediapipe",
        database_url=f"sqlite:///{tmp_path / 'pose.db'}",
        stream_send_timeout_s=str(send_timeout_s),
    )


def test_a_client_that_stops_reading_is_closed_with_1008_within_the_send_timeout(
    start_service: StartService, tmp_path: Path, test_data: Path
) -> None:
    service = start(start_service, tmp_path)
    client = Client(service, "deaf", encoded_frames(test_data / "videos/squat_8reps.mp4", step=3))
    client.start_reading()
    began = time.monotonic()
    while client.answers < 10 and time.monotonic() - began < 60:
        client.send_frame()
        time.sleep(0.03)  # a camera's pace
    assert client.answers >= 10, "the stream did not answer while the client read"
    ceased = client.stop_reading()
    cut: float | None = None
    try:
        while time.monotonic() - ceased < 30:
            client.send_frame()
            time.sleep(0.03)
            if slow_clients(service) >= 1:
                cut = time.monotonic() - ceased
                break
    except OSError:  # the service dropped the connection before the metric was read
        cut = time.monotonic() - ceased
    assert cut is not None, "a client that stopped reading was not closed in 30 s"
    assert cut <= CUT_WITHIN_S, f"closed {cut:.2f} s after the client stopped reading ({client.sent} frames)"
    # It waited for the deadline: the pings still unanswered when it stopped are at most one interval old.
    assert cut >= SEND_TIMEOUT_S - ping_interval(SEND_TIMEOUT_S) - 0.1, f"closed early, after {cut:.2f} s"
    code, reason = client.close_frame()  # the close is queued behind the answers it did not read
    client.sock.close()
    assert code == 1008
    assert "did not read its answers for 1 s" in reason


def test_a_client_that_reads_in_bursts_but_keeps_up_is_not_cut(
    start_service: StartService, tmp_path: Path, test_data: Path
) -> None:
    service = start(start_service, tmp_path)
    client = Client(service, "bursty", encoded_frames(test_data / "videos/squat_8reps.mp4", step=3))
    # Reads everything every 0.6 s: pings wait up to 0.6 s + an interval, within the 1 s deadline.
    client.start_reading(pause_s=0.6)
    began = time.monotonic()
    while time.monotonic() - began < 8:
        client.send_frame()
        time.sleep(0.03)
    answered = client.answers
    client.stop_reading()
    client.sock.close()
    assert slow_clients(service) == 0
    assert answered >= 20, f"only {answered} answers in 8 s"


def test_time_the_service_itself_does_not_read_is_not_held_against_the_client(
    start_service: StartService, tmp_path: Path, test_data: Path
) -> None:
    # The YOLO backend is set up when the first stream asks for it (seconds on CPU); the frame
    # the client sends meanwhile waits for the stream, and uvicorn reads nothing more from that
    # client until it is taken: the client's pongs wait in the service's own buffer.
    # The set-up must take longer than timeout + ping interval for the test to prove anything:
    # 0.57 s on a quiet machine, 1.8 s on a loaded one, so the deadline here is 0.125 s.
    timeout = SEND_TIMEOUT_S / 8
    service = start(start_service, tmp_path, timeout)
    clip = encoded_frames(test_data / "videos/squat_8reps.mp4", step=3, limit=4)
    url = service.url.replace("http://", "ws://") + "/ws/streams/patient"
    with connect(url, open_timeout=30, close_timeout=10) as ws:
        began = time.monotonic()
        ws.send(json.dumps({"type": "start", "backend": "yolo"}))
        for capture_ts, data in clip:
            ws.send(json.dumps({"type": "frame", "capture_ts": capture_ts}))
            ws.send(data)
        started = json.loads(ws.recv(timeout=120))
        setup_s = time.monotonic() - began
        assert started["type"] == "started", started
        assert json.loads(ws.recv(timeout=120))["type"] == "frame"
    assert setup_s > timeout + ping_interval(timeout), f"set up in {setup_s:.2f} s: proves nothing"
    assert slow_clients(service) == 0
