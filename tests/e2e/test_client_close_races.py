"""The lockstep camera client against replicas that close (1012) while a frame is in flight.

websockets hands over every message that arrived before a close frame, so an answer written in
the same TCP write as the 1012 reaches the client: the frame it answers must not be sent again
(else it is counted twice), and a frame still unanswered must be (else it is lost).  The
replicas are real websockets servers on real sockets in this process; what they saw is the
proof: every frame of the clip answered exactly once, nothing answered sent again.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from websockets.asyncio.server import ServerConnection, serve

from pose_analyzer.client import ClientConfig, FrameSource
from pose_analyzer.client.stream import StreamClient

FRAMES = 30
PER_CONNECTION = 2  # frames a replica takes before its close: 15 races per clip
LINGER_S = 0.05


def write_clip(path: Path) -> None:
    """A tiny MJPG clip of FRAMES distinct frames (a real file for the real FrameSource)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (32, 32))
    assert writer.isOpened()
    for index in range(FRAMES):
        writer.write(np.full((32, 32, 3), index * 8, dtype=np.uint8))
    writer.release()


@dataclass
class Replicas:
    """What the replicas saw: each frame (by capture time) received and answered, closes made."""

    received: Counter[float] = field(default_factory=Counter)
    answered: Counter[float] = field(default_factory=Counter)
    closes: int = 0


Close1012 = Callable[[ServerConnection, dict[str, Any], Replicas], Awaitable[None]]


async def answer_and_close_in_one_write(
    ws: ServerConnection, header: dict[str, Any], seen: Replicas, close_socket: bool = True
) -> None:
    """The frame's answer and a 1012 close in one TCP write, then the socket closed (a replica
    that answered its last frame and exits)."""
    seen.answered[header["capture_ts"]] += 1
    ws.protocol.send_text(json.dumps(answer(header)).encode())
    ws.protocol.send_close(1012, "service restart")
    ws.transport.write(b"".join(ws.protocol.data_to_send()))
    if close_socket:
        ws.transport.close()


async def answer_and_close_then_linger(ws: ServerConnection, header: dict[str, Any], seen: Replicas) -> None:
    """The answer and the 1012 in one write, the socket held open a while (a replica behind a
    proxy, slow to close): the client's next frame is ready before its connection ends, and
    its send meets the close (that frame must be sent again, not lost).

    The delay only widens the race: the client must be right in either order.
    """
    ws.transport.pause_reading()  # the client's closing reply is not seen until it resumes
    await answer_and_close_in_one_write(ws, header, seen, close_socket=False)
    await asyncio.sleep(LINGER_S)
    ws.transport.resume_reading()


async def close_on_receipt(ws: ServerConnection, header: dict[str, Any], seen: Replicas) -> None:
    """A 1012 right after the frame arrived, unanswered (a drain whose grace ran out)."""
    await ws.close(1012, "service restart")


def answer(header: dict[str, Any]) -> dict[str, Any]:
    return {"type": "frame", "frame_id": header["frame_id"], "rep_count": 0, "dropped": 0}


def replica(seen: Replicas, close: Close1012) -> Callable[[ServerConnection], Awaitable[None]]:
    """The stream protocol of pose_analyzer, closing with ``close`` on a connection's last frame."""

    async def handler(ws: ServerConnection) -> None:
        start = json.loads(await ws.recv())
        await ws.send(json.dumps({"type": "started", "session_id": start["session_id"], "rep_count": 0}))
        taken = 0
        while True:
            header = json.loads(await ws.recv())
            if header["type"] == "stop":
                await ws.send(json.dumps({"type": "stopped", "rep_count": 0}))
                return
            jpeg = await ws.recv()
            assert isinstance(jpeg, bytes)
            assert jpeg.startswith(b"\xff\xd8")
            seen.received[header["capture_ts"]] += 1
            taken += 1
            if taken == PER_CONNECTION:
                seen.closes += 1
                await close(ws, header, seen)
                return
            seen.answered[header["capture_ts"]] += 1
            await ws.send(json.dumps(answer(header)))

    return handler


@pytest.mark.parametrize(
    "close", [answer_and_close_in_one_write, answer_and_close_then_linger, close_on_receipt]
)
async def test_every_frame_is_answered_once_however_the_1012_races_it(
    tmp_path: Path, close: Close1012
) -> None:
    clip = tmp_path / "clip.avi"
    write_clip(clip)
    seen = Replicas()
    async with serve(replica(seen, close), "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        config = ClientConfig(
            f"ws://127.0.0.1:{port}", backoff_s=0.001, max_backoff_s=0.005, give_up_after_s=30
        )
        source = FrameSource(str(clip), max_width=None, as_fast_as_possible=True)
        client = StreamClient(config, "cam", source, session_id="s")
        stats = await asyncio.wait_for(client.run(asyncio.Event()), 60)

    assert stats.state == "stopped"
    assert len(seen.answered) == FRAMES, f"frames never answered: {FRAMES - len(seen.answered)}"
    twice = [ts for ts, count in seen.answered.items() if count > 1]
    assert not twice, f"answered twice: {twice}"
    assert stats.sent == stats.answered == FRAMES, stats.summary()
    # Sent again only what went unanswered: every reception beyond a frame's first was a re-send,
    # and no connection lost more than its one frame in flight.
    assert sum(seen.received.values()) - FRAMES <= stats.resent <= seen.closes, (stats.summary(), seen)
    if close is close_on_receipt:
        assert stats.resent == seen.closes == sum(seen.received.values()) - FRAMES
