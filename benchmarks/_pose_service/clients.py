"""N WebSocket clients at 30 fps each against the service, and the figures of one run.

Each client sends ``start`` and waits for ``started`` (detector set up), all clients then start
together; a sender task sends a ``frame`` header (capture time = send time) and a JPEG every
1/30 s without waiting for answers (the service is latest-frame-wins), a receiver task collects
the answers; at the end ``stop`` and the ``stopped`` totals.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from _pose_service.frames import SEND_FPS

DRIFT_WINDOW_S = 10.0


@dataclass
class ClientLog:
    """What one client sent and got: send times by frame id, answers as (send, receive) times."""

    sent: dict[int, float] = field(default_factory=dict)
    answers: list[tuple[float, float]] = field(default_factory=list)
    stopped: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)
    reps: int = 0  # ``rep`` messages: a rep announced once its commit returned (not an error)
    send_blocked_s: float = 0.0


async def _sender(ws: ClientConnection, clip: list[bytes], t0: float, seconds: float, log: ClientLog) -> None:
    period = 1.0 / SEND_FPS
    k = 0
    next_at = t0
    while True:
        now = time.monotonic()
        if now >= t0 + seconds:
            break
        if next_at > now:
            await asyncio.sleep(next_at - now)
        sent_at = time.monotonic()
        log.sent[k] = sent_at  # before the sends: the answer may come while one still waits
        await ws.send(json.dumps({"type": "frame", "frame_id": k, "capture_ts": sent_at}))
        await ws.send(clip[k % len(clip)])
        # Time spent in send: the client's own slowness, or TCP back-pressure when the
        # service's event loop reads frames more slowly than they come.
        log.send_blocked_s += time.monotonic() - sent_at
        k += 1
        # A late sender goes on at 30 fps from now rather than sending a burst to catch up.
        next_at = max(next_at + period, time.monotonic() - period)
    await ws.send(json.dumps({"type": "stop"}))


async def _receiver(ws: ClientConnection, log: ClientLog) -> None:
    async for message in ws:
        received_at = time.monotonic()
        data = json.loads(message)
        if data.get("type") == "frame":
            sent_at = log.sent.get(int(data["frame_id"]))
            if sent_at is not None:
                log.answers.append((sent_at, received_at))
        elif data.get("type") == "stopped":
            log.stopped = data
            return
        elif data.get("type") == "rep":
            log.reps += 1
        else:
            log.errors.append(str(data)[:200])


async def _client(
    url: str, clip: list[bytes], exercise: str | None, ready: asyncio.Barrier, t0: list[float], seconds: float
) -> ClientLog:
    log = ClientLog()
    async with connect(url, open_timeout=60, close_timeout=10, max_size=2**22) as ws:
        await ws.send(json.dumps({"type": "start", "exercise": exercise}))
        started = json.loads(await asyncio.wait_for(ws.recv(), 120))
        if started.get("type") != "started":
            raise RuntimeError(f"the service refused the stream: {started}")
        if await ready.wait() == 0:  # one client sets the common start time
            t0.append(time.monotonic() + 0.2)
        await ready.wait()
        receiving = asyncio.ensure_future(_receiver(ws, log))
        try:
            await _sender(ws, clip, t0[0], seconds, log)
            # After ``stop`` the service answers the waiting frame, commits, then ``stopped``.
            await asyncio.wait_for(asyncio.shield(receiving), 60)
        finally:
            receiving.cancel()
    return log


async def run_clients(
    base_url: str, clips: list[list[bytes]], n: int, exercise: str | None, seconds: float
) -> tuple[list[ClientLog], float]:
    """Stream ``clips[i % 4]`` from client ``i`` of ``n`` for ``seconds``; returns the logs and the
    common start time (monotonic clock)."""
    ready = asyncio.Barrier(n)
    t0: list[float] = []
    ws_base = base_url.replace("http://", "ws://")
    tasks = [
        _client(f"{ws_base}/ws/streams/bench-{n}-{i}", clips[i % len(clips)], exercise, ready, t0, seconds)
        for i in range(n)
    ]
    logs = await asyncio.wait_for(asyncio.gather(*tasks), seconds + 300)
    return list(logs), t0[0]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def service_figures(logs: list[ClientLog], t0: float, seconds: float) -> dict[str, float]:
    """fps, latency percentiles, drop rate and drift of one run (see ``pose_service``'s doc)."""
    sent = sum(len(log.sent) for log in logs)
    answers = [a for log in logs for a in log.answers]
    latencies_ms = [(recv - send) * 1000.0 for send, recv in answers]
    # Each client's last frame has no successor to replace it: it waits for its stream's turn at a
    # compute slot (up to one round of every stream) instead of at most one frame interval.
    steady_ms: list[float] = []
    for log in logs:
        last_sent = max(log.sent.values(), default=float("inf"))
        steady_ms.extend((recv - send) * 1000.0 for send, recv in log.answers if send < last_sent)
    in_window = sum(1 for _, recv in answers if t0 <= recv <= t0 + seconds)
    window = min(DRIFT_WINDOW_S, seconds / 2)
    first = [(r - s) * 1000.0 for s, r in answers if s < t0 + window]
    last = [(r - s) * 1000.0 for s, r in answers if s >= t0 + seconds - window]
    drift = statistics.median(last) / statistics.median(first) if first and last else float("nan")
    return {
        "fps": in_window / seconds,
        "p50_ms": _percentile(latencies_ms, 0.5),
        "p99_ms": _percentile(latencies_ms, 0.99),
        "p99_ms_steady": _percentile(steady_ms, 0.99),
        "drop_rate": 1.0 - len(answers) / sent if sent else float("nan"),
        "latency_drift": drift,
        "sent": float(sent),
        "sent_fps": sent / seconds,
        "send_ms": 1000.0 * sum(log.send_blocked_s for log in logs) / sent if sent else float("nan"),
        "answered": float(len(answers)),
    }
