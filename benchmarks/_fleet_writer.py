"""Phase 2 of bench-fleet (benchmarks/fleet.py): the per-frame p99 latency with the background
writer against the same service without it, two groups of 4 streams taking turns."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any, cast

from pose_analyzer.client import CameraSession, ClientConfig, FrameSource, StreamStats
from pose_analyzer.client.sources import EncodedFrame

CLIP = Path(__file__).resolve().parent.parent / "tests" / "data" / "videos" / "squat_8reps.mp4"


class GatedSource(FrameSource):
    """The looped clip, handed out only while ``gate`` is set: two groups of streams take turns."""

    def __init__(self, gate: asyncio.Event, width: int, every: int) -> None:
        super().__init__(str(CLIP), max_width=width, as_fast_as_possible=True, every=every, loop=True)
        self.gate = gate

    async def frames(self) -> AsyncIterator[EncodedFrame]:
        inner = cast(AsyncGenerator[EncodedFrame, None], super().frames())  # an async generator
        async with contextlib.aclosing(inner) as frames:
            async for frame in frames:
                await self.gate.wait()
                yield frame


async def drained(stats: list[StreamStats], timeout: float = 5.0) -> None:
    """Until every frame sent to ``stats``' streams is answered (lockstep: one per stream)."""
    deadline = time.monotonic() + timeout
    while sum(s.answered for s in stats) < sum(s.sent for s in stats):  # resent ones answer once
        if time.monotonic() > deadline:
            return
        await asyncio.sleep(0.01)


async def writer_cost(
    writer_url: str, bare_url: str, seconds: float, width: int, every: int, turn_s: float = 3.0
) -> tuple[dict[str, Any], list[StreamStats]]:
    """Phase 2: 4 streams to a recording replica and 4 to the bare one, taking turns of ``turn_s``
    (one group sends while the other waits, the first turn of each a warm-up) for about ``seconds``
    each, so both see the same load of the shared machine.  Returns the figures and the recorded
    side's streams."""
    gates = {"writer": asyncio.Event(), "none": asyncio.Event()}
    urls = {"writer": writer_url, "none": bare_url}
    sessions = {
        name: CameraSession(
            ClientConfig(urls[name], exercise="squat"),
            {f"w{i}": GatedSource(gates[name], width, every) for i in range(4)},
        )
        for name in gates
    }
    latencies: dict[str, list[float]] = {name: [] for name in gates}
    rep_frames: dict[str, list[float]] = {name: [] for name in gates}  # of them, rep frames'
    stop = asyncio.Event()
    running = [asyncio.ensure_future(session.run(stop)) for session in sessions.values()]
    try:
        for turn in range(2 * (1 + max(1, round(seconds / turn_s)))):
            name = ("writer", "none")[turn % 2]
            stats = list(sessions[name].stats.values())
            marks = [(len(s.latencies_ms), len(s.rep_frame_latencies_ms)) for s in stats]
            gates[name].set()
            await asyncio.sleep(turn_s)
            gates[name].clear()
            await drained(stats)
            if turn >= 2:
                for s, (frames, reps) in zip(stats, marks, strict=True):
                    latencies[name] += list(s.latencies_ms)[frames:]
                    rep_frames[name] += s.rep_frame_latencies_ms[reps:]
    finally:
        for gate in gates.values():
            gate.set()
        stop.set()
        await asyncio.gather(*running)
    for session in sessions.values():
        if session.failures:
            raise RuntimeError(f"writer-cost streams failed: {session.failures}")
    p99_writer, p99_none = p99(latencies["writer"]), p99(latencies["none"])
    # The frames that completed no rep: what the writer costs where nothing waits for a commit.
    plain = {name: list((Counter(latencies[name]) - Counter(rep_frames[name])).elements()) for name in gates}
    plain_writer, plain_none = p99(plain["writer"]), p99(plain["none"])
    print(f"p99 with the writer {p99_writer} ms, without {p99_none} ms", flush=True)
    recorded = list(sessions["writer"].stats.values())
    return (
        {
            "frame_latency_ms_p99_writer": p99_writer,
            "frame_latency_ms_p99_no_writer": p99_none,
            "p99_writer_vs_none": round(p99_writer / p99_none, 3) if p99_writer and p99_none else None,
            "frames_writer_vs_none": [len(latencies["writer"]), len(latencies["none"])],
            "rep_frames_writer_vs_none": [len(rep_frames["writer"]), len(rep_frames["none"])],
            "p99_writer_vs_none_no_rep_frames": round(plain_writer / plain_none, 3)
            if plain_writer and plain_none
            else None,
        },
        recorded,
    )


def p99(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1)
