"""The fleet (HAProxy + PostgreSQL + 3 pose_analyzer replicas, scripts/fleet.py) under real streams.

A 4th replica ("bare") runs beside the fleet with ``POSE_RECORD_STREAMS=false``: the same service
without stream recording (no background writer, no commits), reached directly, never killed.

1. Proxy cost: 4 streams of one session (so HAProxy hashes them to one replica R), each sending
   the squat clip frame by frame (the next frame once the previous is answered, clip looped),
   for ``--seconds`` after a 2 s warm-up: straight to R, then through HAProxy, twice in turn.
   ``via_haproxy_vs_direct_4`` = answered fps via HAProxy / answered fps direct (goal >= 0.97).
2. Writer cost: 4 such streams straight to r1, which records them (background writer, each rep
   committed before it is announced), and 4 straight to the bare replica, taking turns of 3 s
   (one group sends while the other waits; the first turn of each is a warm-up) for about
   ``--writer-seconds`` each (about 3000 frames a side, so that the p99 rests on some 30 frames,
   not 8), so that both meet the same load of the shared machine.
   ``p99_writer_vs_none`` = p99 of the per-frame latency (client send -> answer) with the writer
   / the same without it (goal <= 1.05); ``p99_writer_vs_none_no_rep_frames`` the same over the
   frames that completed no rep.  No answer waits for a commit (a rep frame is answered at once,
   its rep announced by a ``rep`` message after the commit).  PostgreSQL's own CPU is spent on
   the same cores as both groups' replicas; the writer's thread and event-loop work only in r1.
3. Failover: one session of 2 cameras streams through HAProxy; ``--kills`` times the replica
   serving it is SIGKILLed and started again once the cameras answer on a survivor.
   ``failover_s_p50``/``failover_s_max``: per camera and kill, the time from the kill's lost
   connection to the first answer on the new replica (goal max <= 3 s).
   ``lost_reps``: reps any client was told about that PostgreSQL does not hold (goal 0).
4. ``rep_commit_ms_p99``: the issue's "time from the rep's last frame to its commit", measured
   at the service: from the arrival of the frame that completed the rep to the rep's commit
   returning.  The service answers that frame at once and announces the rep in a ``rep``
   message built once the commit returned, so that message's ``latency_ms`` (arrival ->
   announcement, the service's own clock) is that time plus the microseconds of building it;
   network, HAProxy and the client are not in it.
   Pooled over every rep frame of the recorded streams (phases 1, 2 and 3); ``rep_commit_n``
   says how many.  It includes the frame's wait for a core, its decoding and detection (the rep
   is known only once the frame is analysed).
   ``rep_commit_wait_ms_p50``/``_p99``: the part of it spent waiting for the commit (the
   ``rep`` messages' ``commit_ms``: writer queue, thread hop, transaction).
   ``rep_commit_ms_p99_metrics``: cross-check from R's ``pose_stream_rep_commit_seconds``
   histogram after phase 1 (the upper bound of the bucket holding its p99).
   ``rep_answer_ms_p99``: the client's send of the rep's frame -> the rep's announcement
   (network and the client's queueing included), for comparison, and
   ``frame_latency_ms_p99`` the same for every frame of the failover session.

The machine's cores are shared by the replicas, HAProxy, PostgreSQL and the clients.

    python benchmarks/fleet.py [--seconds 12] [--writer-seconds 45] [--kills 10] [--width 256]
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
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _fleet_writer import p99, writer_cost
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


@dataclass
class Run:
    """What one timed run of 4 streams measured (after its warm-up)."""

    fps: float
    latencies_ms: list[float]  # client send -> answer, every frame
    rep_service_ms: list[float]  # the service's arrival of a rep's frame -> the rep's announcement
    rep_answer_ms: list[float]  # client send of a rep's frame -> the rep's announcement
    rep_commit_wait_ms: list[float]  # the part of rep_service_ms spent waiting for the commit


# The per-frame lists of ``StreamStats`` a timed run keeps (its window's part of each).
SERIES = ("latencies_ms", "rep_service_ms", "rep_latencies_ms", "rep_commit_wait_ms")


async def timed_run(config: ClientConfig, session_id: str, seconds: float, width: int, every: int) -> Run:
    """4 streams in ``session_id`` for ``seconds`` after a 2 s warm-up."""
    session = CameraSession(config, {f"tp{i}": source(width, every) for i in range(4)}, session_id)
    stop = asyncio.Event()
    running = asyncio.ensure_future(session.run(stop))
    await asyncio.sleep(2.0)
    stats = list(session.stats.values())
    start, t0 = [(s.answered, {f: len(getattr(s, f)) for f in SERIES}) for s in stats], time.perf_counter()
    await asyncio.sleep(seconds)
    window = {
        f: [ms for s, (_, marks) in zip(stats, start, strict=True) for ms in list(getattr(s, f))[marks[f] :]]
        for f in SERIES
    }
    answered, t1 = sum(s.answered for s in stats) - sum(n for n, _ in start), time.perf_counter()
    stop.set()
    await running
    if session.failures:
        raise RuntimeError(f"throughput streams failed: {session.failures}")
    return Run(
        fps=answered / (t1 - t0),
        latencies_ms=window["latencies_ms"],
        rep_service_ms=window["rep_service_ms"],
        rep_answer_ms=window["rep_latencies_ms"],
        rep_commit_wait_ms=window["rep_commit_wait_ms"],
    )


def metrics_p99_ms(url: str, name: str = "pose_stream_rep_commit_seconds") -> float | None:
    """The upper bound (ms) of the bucket of ``name``'s histogram at ``url``/metrics holding its p99."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    buckets = sorted(
        (float(le), float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith(f"{name}_bucket{{")
        for le in [line.split('le="', 1)[1].split('"', 1)[0]]
    )
    total = buckets[-1][1] if buckets else 0.0
    if total == 0:
        return None
    return next(round(le * 1000.0, 1) for le, count in buckets if count >= 0.99 * total)


async def throughput(fleet: Any, seconds: float, width: int, every: int) -> tuple[dict[str, Any], list[Run]]:
    """Phase 1; also returns its runs (their rep frames count for the rep commit figures)."""
    via = ClientConfig(fleet.url, exercise="squat")
    session_id = await CameraSession(via, {"x": source(width, every)}).open()
    replica = fleet.replica_for(session_id)
    direct = ClientConfig(f"ws://127.0.0.1:{fleet.replicas[replica]}", exercise="squat")
    runs: dict[str, list[Run]] = {"direct": [], "via": []}
    for _ in range(2):
        runs["direct"].append(await timed_run(direct, session_id, seconds, width, every))
        runs["via"].append(await timed_run(via, session_id, seconds, width, every))
        print(f"fps direct {runs['direct'][-1].fps:.1f}, via HAProxy {runs['via'][-1].fps:.1f}", flush=True)
    fps_direct = statistics.mean(r.fps for r in runs["direct"])
    fps_via = statistics.mean(r.fps for r in runs["via"])
    result = {
        "fps_direct_4": round(fps_direct, 2),
        "fps_via_haproxy_4": round(fps_via, 2),
        "via_haproxy_vs_direct_4": round(fps_via / fps_direct, 3),
        "rep_commit_ms_p99_metrics": metrics_p99_ms(fleet.replica_url(replica)),
    }
    return result, runs["direct"] + runs["via"]


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
            assert victim is not None  # HAProxy names the replica of every connection
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
    stored = {(s, label, round((origin or 0.0) + end, 4)) for s, label, origin, end in rows}
    told = {
        (r.session_id, r.stream_id, round(r.end_s, 4))
        for s in sessions
        for st in s.stats.values()
        for r in st.reps
    }
    return len(told - stored), len(stored)


async def main_async(args: argparse.Namespace, fleet: Any, bare_url: str) -> dict[str, Any]:
    result, runs = await throughput(fleet, args.seconds, args.width, args.every)
    rep_service_ms = [ms for r in runs for ms in r.rep_service_ms]
    rep_commit_wait_ms = [ms for r in runs for ms in r.rep_commit_wait_ms]
    rep_answer_ms = [ms for r in runs for ms in r.rep_answer_ms]
    writer_url = f"ws://127.0.0.1:{fleet.replicas['r1']}"
    costs, recorded = await writer_cost(writer_url, bare_url, args.writer_seconds, args.width, args.every)
    result.update(costs)
    session, outages = await failovers(fleet, args.kills, args.width, args.every)
    lost, stored = lost_reps(fleet.database_url, [session])
    stats: list[StreamStats] = list(session.stats.values())
    stats_with_reps = recorded + stats  # phase 2's streams from their start (warm-up included)
    rep_service_ms += [ms for s in stats_with_reps for ms in s.rep_service_ms]
    rep_answer_ms += [ms for s in stats_with_reps for ms in s.rep_latencies_ms]
    rep_commit_wait_ms += [ms for s in stats_with_reps for ms in s.rep_commit_wait_ms]
    result.update(
        kills=args.kills,
        failover_s_p50=round(statistics.median(outages), 3),
        failover_s_max=round(max(outages), 3),
        lost_reps=lost,
        reps_stored=stored,
        rep_commit_ms_p99=p99(rep_service_ms),
        rep_commit_n=len(rep_service_ms),
        rep_commit_wait_ms_p50=round(statistics.median(rep_commit_wait_ms), 1)
        if rep_commit_wait_ms
        else None,
        rep_commit_wait_ms_p99=p99(rep_commit_wait_ms),
        rep_answer_ms_p99=p99(rep_answer_ms),
        frame_latency_ms_p99=p99([ms for s in stats for ms in s.latencies_ms]),
    )
    return result


def start(fleet: Any) -> str:
    """Start PostgreSQL, replicas r1-r3 behind HAProxy and the bare replica r4 (direct only);
    returns the bare replica's WebSocket URL."""
    fleet.start_postgres()
    names = [fleet.start_replica(i, ENV) for i in (1, 2, 3)]
    bare = fleet.start_replica(4, {**ENV, "POSE_RECORD_STREAMS": "false"})
    fleet.wait_ready([*names, bare])
    port = fleet.replicas.pop(bare)  # not in HAProxy's configuration, never killed
    fleet.start_haproxy()
    fleet.wait_routed(set(names))
    return f"ws://127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="timed streaming per throughput run")
    parser.add_argument(
        "--writer-seconds", type=float, default=45.0, help="timed streaming per side, phase 2"
    )
    parser.add_argument(
        "--kills", type=int, default=10, help="replicas SIGKILLed in turn (>= 10 for the goal)"
    )
    parser.add_argument("--width", type=int, default=256, help="frame width sent")
    parser.add_argument("--every", type=int, default=3, help="send every N-th frame of the 24 fps clip")
    args = parser.parse_args()
    began = time.monotonic()
    fleet_script = _fleet_module()
    state = Path(tempfile.mkdtemp(prefix="pose-bench-fleet-"))
    state.chmod(0o755)  # PostgreSQL runs as "postgres" when this runs as root
    fleet = fleet_script.Fleet(state, free_port(), free_port(), free_port(), free_port())
    try:
        bare_url = start(fleet)
        result = asyncio.run(main_async(args, fleet, bare_url))
    finally:
        fleet.stop()
        shutil.rmtree(state, ignore_errors=True)
    print(f"the benchmark took {time.monotonic() - began:.0f} s", flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
