"""The fleet (HAProxy + PostgreSQL + 3 pose_analyzer replicas, scripts/fleet.py) under real streams.

1. Proxy cost: 4 streams of one session (so HAProxy hashes them to one replica R), each sending
   the squat clip frame by frame (the next frame once the previous is answered, clip looped),
   for ``--seconds``: straight to R, then through HAProxy, twice in turn.
   ``via_haproxy_vs_direct_4`` = answered fps via HAProxy / answered fps direct (goal >= 0.97).
2. Failover: one session of 2 cameras streams through HAProxy; ``--kills`` times the replica
   serving it is SIGKILLed and started again once the cameras answer on a survivor.
   ``failover_s_p50``/``failover_s_max``: per camera and kill, the time from the kill's lost
   connection to the first answer on the new replica (goal max <= 3 s).
3. ``lost_reps``: reps any client was told about that PostgreSQL does not hold (goal 0);
   ``rep_commit_ms_p99``: send -> answer of the frames that announced a rep, which the service
   commits before it answers (so it bounds a rep's last frame -> commit; goal <= 250 ms);
   ``frame_latency_ms_p99``: the same for every frame, for comparison.

The machine's cores are shared by the replicas, HAProxy, PostgreSQL and the clients.

    python benchmarks/fleet.py [--seconds 15] [--kills 10] [--width 256]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import shutil
import signal
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from pose_analyzer.client import CameraSession, ClientConfig, FrameSource, StreamStats
from pose_analyzer.storage import create_database
from pose_analyzer.storage.models import Repetition, StreamRecord

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "tests" / "data" / "videos" / "squat_8reps.mp4"
ENV = {"POSE_BACKEND": "mediapipe"}


def _fleet_module() -> Any:
    spec = importlib.util.spec_from_file_location("fleet_script", ROOT / "scripts" / "fleet.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def source(width: int, every: int) -> FrameSource:
    return FrameSource(str(CLIP), max_width=width, as_fast_as_possible=True, every=every, loop=True)


async def answered_fps(
    config: ClientConfig, session_id: str, seconds: float, width: int, every: int
) -> float:
    """Answered frames per second of 4 streams in ``session_id`` after a 2 s warm-up."""
    session = CameraSession(config, {f"tp{i}": source(width, every) for i in range(4)}, session_id)
    stop = asyncio.Event()
    running = asyncio.ensure_future(session.run(stop))
    await asyncio.sleep(2.0)
    start, t0 = sum(s.answered for s in session.stats.values()), time.perf_counter()
    await asyncio.sleep(seconds)
    end, t1 = sum(s.answered for s in session.stats.values()), time.perf_counter()
    stop.set()
    await running
    if session.failures:
        raise RuntimeError(f"throughput streams failed: {session.failures}")
    return (end - start) / (t1 - t0)


async def throughput(fleet: Any, seconds: float, width: int, every: int) -> dict[str, Any]:
    via = ClientConfig(fleet.url, exercise="squat")
    session_id = await CameraSession(via, {"x": source(width, every)}).open()
    replica = fleet.replica_for(session_id)
    direct = ClientConfig(f"ws://127.0.0.1:{fleet.replicas[replica]}", exercise="squat")
    runs: dict[str, list[float]] = {"direct": [], "via": []}
    for _ in range(2):
        runs["direct"].append(await answered_fps(direct, session_id, seconds, width, every))
        runs["via"].append(await answered_fps(via, session_id, seconds, width, every))
        print(f"fps direct {runs['direct'][-1]:.1f}, via HAProxy {runs['via'][-1]:.1f}", flush=True)
    fps_direct, fps_via = statistics.mean(runs["direct"]), statistics.mean(runs["via"])
    return {
        "fps_direct_4": round(fps_direct, 2),
        "fps_via_haproxy_4": round(fps_via, 2),
        "via_haproxy_vs_direct_4": round(fps_via / fps_direct, 3),
    }


async def failovers(fleet: Any, kills: int, width: int, every: int) -> tuple[CameraSession, list[float]]:
    config = ClientConfig(fleet.url, exercise="squat", max_backoff_s=0.5)
    session = CameraSession(config, {f"cam{i}": source(width, every) for i in (1, 2)})
    stop = asyncio.Event()
    running = asyncio.ensure_future(session.run(stop))
    streams = list(session.stats.values())

    async def until(condition: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if running.done():
                running.result()
                raise RuntimeError(f"the session ended while waiting for {what}: {session.failures}")
            if time.monotonic() > deadline:
                raise TimeoutError(what)
            await asyncio.sleep(0.02)

    try:
        for kill in range(kills):
            base = [s.answered for s in streams]
            await until(
                lambda b=base: all(s.answered >= n + 10 for s, n in zip(streams, b, strict=True)),
                60,
                "answers",
            )
            victim = streams[0].replicas[-1]
            fleet.signal_replica(victim, signal.SIGKILL)
            await until(lambda k=kill: all(len(s.outages_s) > k for s in streams), 60, "failover")
            print(
                f"kill {kill + 1}: {victim}, back in {[round(s.outages_s[-1], 2) for s in streams]} s",
                flush=True,
            )
            fleet.start_replica(int(victim[1:]), ENV)
            await asyncio.to_thread(fleet.wait_ready, [victim])
            await asyncio.to_thread(fleet.wait_routed, set(fleet.replicas))
    finally:
        stop.set()
        await running
    return session, [o for s in streams for o in s.outages_s]


def lost_reps(url: str, sessions: list[CameraSession]) -> tuple[int, int]:
    """(reps told but not stored, reps stored) over ``sessions``."""
    ids = [s.session_id for s in sessions if s.session_id is not None]
    with create_database(url) as database, database.session() as db:
        rows = db.execute(
            select(
                StreamRecord.session_id, StreamRecord.stream_id, StreamRecord.clock_origin_s, Repetition.end_s
            )
            .join(Repetition, Repetition.stream_pk == StreamRecord.id)
            .where(StreamRecord.session_id.in_(ids))
        ).all()
    stored = {(s, label, round(origin + end, 4)) for s, label, origin, end in rows}
    told = {
        (r.session_id, r.stream_id, round(r.end_s, 4))
        for s in sessions
        for st in s.stats.values()
        for r in st.reps
    }
    return len(told - stored), len(stored)


def p99(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1)


async def main_async(args: argparse.Namespace, fleet: Any) -> dict[str, Any]:
    result = await throughput(fleet, args.seconds, args.width, args.every)
    session, outages = await failovers(fleet, args.kills, args.width, args.every)
    lost, stored = lost_reps(fleet.database_url, [session])
    stats: list[StreamStats] = list(session.stats.values())
    result.update(
        kills=args.kills,
        failover_s_p50=round(statistics.median(outages), 3),
        failover_s_max=round(max(outages), 3),
        lost_reps=lost,
        reps_stored=stored,
        rep_commit_ms_p99=p99([ms for s in stats for ms in s.rep_latencies_ms]),
        frame_latency_ms_p99=p99([ms for s in stats for ms in s.latencies_ms]),
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="timed streaming per throughput run")
    parser.add_argument(
        "--kills", type=int, default=10, help="replicas SIGKILLed in turn (>= 10 for the goal)"
    )
    parser.add_argument("--width", type=int, default=256, help="frame width sent")
    parser.add_argument("--every", type=int, default=3, help="send every N-th frame of the 24 fps clip")
    args = parser.parse_args()
    fleet_script = _fleet_module()
    state = Path(tempfile.mkdtemp(prefix="pose-bench-fleet-"))
    state.chmod(0o755)  # PostgreSQL runs as "postgres" when this runs as root
    fleet = fleet_script.Fleet(state, free_port(), free_port(), free_port(), free_port())
    try:
        fleet.start(3, env=ENV)
        fleet.wait_routed({"r1", "r2", "r3"})
        result = asyncio.run(main_async(args, fleet))
    finally:
        fleet.stop()
        shutil.rmtree(state, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
