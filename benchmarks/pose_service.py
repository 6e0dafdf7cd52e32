"""The pose service under N WebSocket clients at 30 fps each, against the bare backend loop, in one run.

Frames: ``multicam/videos/cam01..04.mp4`` downscaled to ``--max-width`` and encoded as JPEG
once, before any clock starts; each clip is played forward then backward (no jump at the
loop), client ``i`` streams camera ``i % 4``.

1. Bare backend loop (this process, no service): per camera one detector and one
   ``PoseEngine`` (same tracker and exercise as a service stream); each frame is
   ``decode_frame`` (the service's checked ``cv2.imdecode``) + ``detect_and_analyse``
   (detect, then track/smooth/angles/reps): what the service does per frame minus the
   WebSocket, JSON and database.  It runs with as many worker threads as the machine has
   cores, each on its own camera, because the service also runs one detector per stream in
   worker threads: a single-thread loop would use one core while the service uses all of
   them, and the ratio would flatter the service.
   ``bare_fps_N``, the baseline of ``service_vs_bare_N``, is that parallel figure measured
   right before the run with N clients (``bare_fps``: their median); ``bare_fps_serial`` is
   the one-thread loop, for reference.
2. The real service: ``python -m pose_analyzer`` on a free 127.0.0.1 port (MediaPipe,
   SQLite and logs in a temporary directory), fed by N clients for ``--seconds`` each.
   Each client sends ``start`` and waits for ``started`` (detector set up), all clients
   then start together; a sender task sends a ``frame`` header (capture time = send time)
   and a JPEG every 1/30 s without waiting for answers (the service is latest-frame-wins),
   a receiver task collects the answers; at the end ``stop`` and the ``stopped`` totals.

Per N: ``fps_N`` (answers received within the window, all streams, per second),
``service_vs_bare_N`` (``fps_N / bare_fps_N``; goal >= 0.9 for N=4), ``p50_ms_N``/``p99_ms_N``
(answer receive time minus the client's send time of that frame), ``drop_rate_N``
(1 - answered / sent), ``latency_drift_N`` (median latency of frames sent in the last 10 s
over those sent in the first 10 s; shorter runs compare their halves; goal <= 1.2);
overall ``peak_rss_mb`` of the service process tree.  Also per N: ``sent_fps_N`` (frames the
clients got out, all streams) and ``send_ms_N`` (mean time a frame's send took): when the
service's event loop reads frames more slowly than they come, TCP back-pressure slows the
senders below 30 fps and frames wait in socket buffers, which shows in the latency.  The
clients run on the same cores as the service, as a camera gateway on the same host would.

    python benchmarks/pose_service.py [--seconds 25] [--clients 1,4,16] [--backend mediapipe|yolo]

``--backend yolo`` runs both loops on YOLO11n-pose (the service's shared, cross-stream batched
model; the bare loop's workers each their own model, like MediaPipe's).

The last output line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import cv2
import numpy as np
import psutil
from websockets.asyncio.client import ClientConnection, connect

from pose_analyzer.detection.options import DetectorOptions
from pose_analyzer.detection.registry import BACKENDS, build_detector, create_tracker
from pose_analyzer.engine import PoseEngine, detect_and_analyse
from pose_analyzer.settings import PoseSettings
from pose_analyzer.streaming.decode import decode_frame
from pose_analyzer.types import Frame

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = REPO_ROOT / "tests" / "data"
CAMERAS = tuple(f"multicam/videos/cam0{i}.mp4" for i in range(1, 5))
SEND_FPS = 30.0
DRIFT_WINDOW_S = 10.0
GOAL_RATIO_N4 = 0.9
GOAL_DRIFT = 1.2
BARE_WARMUP = 10


def encode_clip(path: Path, max_width: int, quality: int = 85) -> list[bytes]:
    """The clip's frames downscaled to ``max_width`` as JPEG, played forward then backward.

    Raises:
        ValueError: the clip has no readable frame.
    """
    capture = cv2.VideoCapture(str(path))
    images: list[bytes] = []
    try:
        while True:
            ok, image = capture.read()
            if not ok:
                break
            h, w = image.shape[:2]
            if w > max_width:
                image = cv2.resize(image, (max_width, round(h * max_width / w)), interpolation=cv2.INTER_AREA)
            images.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes())
    finally:
        capture.release()
    if not images:
        raise ValueError(f"no readable frame in {path}")
    return images + images[-2:0:-1]


def _json_number(value: float, digits: int) -> float | None:
    """``value`` rounded, or None (JSON null) when it is not finite."""
    return round(value, digits) if np.isfinite(value) else None


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


# --- 1. bare backend loop ------------------------------------------------------------------------


def _bare_worker(
    clip: list[bytes],
    backend: str,
    exercise: str | None,
    seconds: float,
    start: threading.Barrier,
    counts: list[int],
) -> None:
    """Decode + detect + ``PoseEngine.analyse`` over ``clip`` (cycled): 10 warm-up frames, then timed.

    The timed phase begins when every worker is warm (``start``) and lasts ``seconds``;
    ``counts`` gets the number of frames done in it.
    """
    # The detector options the service builds from the same settings (weights, ONNX cache).
    detector = build_detector(backend, DetectorOptions.from_settings(PoseSettings(log_dir=None), "cpu"))
    detector.setup()
    try:
        engine = PoseEngine(tracker=create_tracker(backend), exercise=exercise)

        def step(i: int) -> None:
            detect_and_analyse(detector, engine, Frame(decode_frame(clip[i % len(clip)]), i / SEND_FPS, i))

        for i in range(BARE_WARMUP):
            step(i)
    except BaseException:
        start.abort()  # the other workers stop waiting for this one
        detector.close()
        raise
    try:
        start.wait(timeout=300)
        deadline = time.perf_counter() + seconds
        i = BARE_WARMUP
        while time.perf_counter() < deadline:
            step(i)
            i += 1
        counts.append(i - BARE_WARMUP)
    finally:
        detector.close()


def bare_fps(
    clips: list[list[bytes]], workers: int, backend: str, exercise: str | None, seconds: float
) -> float:
    """Frames per second of ``workers`` bare loops in threads, each on its own camera, all together.

    Raises:
        RuntimeError: a worker failed (its traceback is printed by the thread).
    """
    counts: list[int] = []
    start = threading.Barrier(workers)
    threads = [
        threading.Thread(
            target=_bare_worker, args=(clips[w % len(clips)], backend, exercise, seconds, start, counts)
        )
        for w in range(workers)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if len(counts) != workers:
        raise RuntimeError("a bare backend worker failed (see its traceback above)")
    return sum(counts) / seconds


# --- 2. the real service -------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_service(
    workdir: Path, backend: str, timeout_s: float = 180.0
) -> Iterator[tuple[str, psutil.Process]]:
    """Start ``python -m pose_analyzer`` on a free loopback port; yields (base URL, process).

    The service is stopped (terminate, then kill) when the block ends, by error or Ctrl-C too.

    Raises:
        RuntimeError: the service exited before it was ready.
        TimeoutError: it was not ready within ``timeout_s``.
    """
    port = _free_port()
    env = {
        **os.environ,
        "POSE_HOST": "127.0.0.1",
        "POSE_PORT": str(port),
        "POSE_BACKEND": backend,
        "POSE_DATABASE_URL": f"sqlite:///{workdir / 'pose.db'}",
        "POSE_LOG_DIR": str(workdir / "logs"),
    }
    log = workdir / "service.out"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pose_analyzer"], cwd=REPO_ROOT, env=env, stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the service exited ({proc.returncode}): {log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the service was not ready after {timeout_s:g} s")
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=2) as resp:
                    if json.load(resp).get("status") == "ready":
                        break
            except OSError:
                pass
            time.sleep(0.3)
        yield url, psutil.Process(proc.pid)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class RssSampler(threading.Thread):
    """Samples the resident memory of a process and its children; ``peak_bytes`` is the maximum."""

    def __init__(self, process: psutil.Process, interval_s: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.process, self.interval_s = process, interval_s
        self.peak_bytes = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                tree = [self.process, *self.process.children(recursive=True)]
                self.peak_bytes = max(self.peak_bytes, sum(p.memory_info().rss for p in tree))
            except psutil.Error:  # a child that just ended; the next sample sees the rest
                pass
            self._stop_event.wait(self.interval_s)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


@dataclass
class ClientLog:
    """What one client sent and got: send times by frame id, answers as (send, receive) times."""

    sent: dict[int, float] = field(default_factory=dict)
    answers: list[tuple[float, float]] = field(default_factory=list)
    stopped: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)
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


async def _run_clients(
    base_url: str, clips: list[list[bytes]], n: int, exercise: str | None, seconds: float
) -> tuple[list[ClientLog], float]:
    ready = asyncio.Barrier(n)
    t0: list[float] = []
    ws_base = base_url.replace("http://", "ws://")
    tasks = [
        _client(f"{ws_base}/ws/streams/bench-{n}-{i}", clips[i % len(clips)], exercise, ready, t0, seconds)
        for i in range(n)
    ]
    logs = await asyncio.wait_for(asyncio.gather(*tasks), seconds + 300)
    return list(logs), t0[0]


def service_figures(logs: list[ClientLog], t0: float, seconds: float) -> dict[str, float]:
    """fps, latency percentiles, drop rate and drift of one run (see the module doc)."""
    sent = sum(len(log.sent) for log in logs)
    answers = [a for log in logs for a in log.answers]
    latencies_ms = [(recv - send) * 1000.0 for send, recv in answers]
    in_window = sum(1 for _, recv in answers if t0 <= recv <= t0 + seconds)
    window = min(DRIFT_WINDOW_S, seconds / 2)
    first = [(r - s) * 1000.0 for s, r in answers if s < t0 + window]
    last = [(r - s) * 1000.0 for s, r in answers if s >= t0 + seconds - window]
    drift = statistics.median(last) / statistics.median(first) if first and last else float("nan")
    return {
        "fps": in_window / seconds,
        "p50_ms": _percentile(latencies_ms, 0.5),
        "p99_ms": _percentile(latencies_ms, 0.99),
        "drop_rate": 1.0 - len(answers) / sent if sent else float("nan"),
        "latency_drift": drift,
        "sent": float(sent),
        "sent_fps": sent / seconds,
        "send_ms": 1000.0 * sum(log.send_blocked_s for log in logs) / sent if sent else float("nan"),
        "answered": float(len(answers)),
    }


# --- main ----------------------------------------------------------------------------------------


def _raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _parse_clients(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--clients must be comma-separated integers, got {text!r}"
        ) from None
    if not counts or any(n < 1 or n > 32 for n in counts):
        raise argparse.ArgumentTypeError("--clients needs 1 to 32 clients per run")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=25.0, help="streaming time per client count")
    parser.add_argument("--clients", type=_parse_clients, default=[1, 4, 16], help="e.g. 1,4,16")
    parser.add_argument("--bare-seconds", type=float, default=8.0, help="timed bare loop per variant")
    parser.add_argument("--max-width", type=int, default=640, help="frames are downscaled to this width")
    parser.add_argument("--exercise", default="squat", help="exercise counted and scored ('' for none)")
    parser.add_argument("--backend", choices=BACKENDS, default="mediapipe", help="pose backend of both loops")
    args = parser.parse_args(argv)
    if not 1.0 <= args.seconds <= 600 or not 0.5 <= args.bare_seconds <= 120:
        parser.error("--seconds must be 1-600 and --bare-seconds 0.5-120")
    missing = [c for c in CAMERAS if not (DATA / c).is_file()]
    if missing:
        parser.error(f"camera clips missing under {DATA}: {', '.join(missing)}")
    exercise = args.exercise or None
    # SIGTERM ends the run like Ctrl-C, so the service is stopped on the way out.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    cores = os.cpu_count() or 1
    began = time.monotonic()

    clips = [encode_clip(DATA / c, args.max_width) for c in CAMERAS]
    height, width = decode_frame(clips[0][0]).shape[:2]
    print(f"frames: {len(clips)} cameras x {len(clips[0])} JPEGs, {width}x{height}", file=sys.stderr)
    serial = bare_fps(clips, 1, args.backend, exercise, args.bare_seconds)
    print(f"bare loop: {serial:.1f} fps on 1 thread ({time.monotonic() - began:.0f} s)", file=sys.stderr)

    runs: dict[int, dict[str, float]] = {}
    bare: dict[int, float] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-pose-service-") as tmp,
        running_service(Path(tmp), args.backend) as (url, process),
    ):
        sampler = RssSampler(process)
        sampler.start()
        try:
            for n in args.clients:
                # The baseline is measured right before each run (the service idle meanwhile):
                # the load of a shared machine changes within minutes.
                bare[n] = bare_fps(clips, cores, args.backend, exercise, args.bare_seconds)
                print(f"bare loop: {bare[n]:.1f} fps on {cores} threads", file=sys.stderr)
                logs, t0 = asyncio.run(_run_clients(url, clips, n, exercise, args.seconds))
                errors = [e for log in logs for e in log.errors]
                if errors:
                    print(f"N={n}: {len(errors)} error answers, first: {errors[0]}", file=sys.stderr)
                runs[n] = service_figures(logs, t0, args.seconds)
                print(
                    f"N={n:2d}: {runs[n]['fps']:.1f} fps ({time.monotonic() - began:.0f} s)", file=sys.stderr
                )
        finally:
            sampler.stop()

    print(
        f"\n{'N':>3} {'sent':>6} {'answered':>8} {'fps':>7} {'bare':>6} {'vs bare':>7} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'drop':>6} {'drift':>6} {'send ms':>7}"
    )
    result: dict[str, Any] = {
        "benchmark": "pose_service",
        "backend": args.backend,
        "exercise": exercise,
        "seconds": args.seconds,
        "clients": args.clients,
        "send_fps": SEND_FPS,
        "frame_size": f"{width}x{height}",
        "cores": cores,
        "machine": platform.machine(),
        "bare_fps": round(statistics.median(bare.values()), 2),
        "bare_fps_serial": round(serial, 2),
    }
    for n, r in runs.items():
        ratio = r["fps"] / bare[n] if bare[n] else float("nan")
        print(
            f"{n:>3} {int(r['sent']):>6} {int(r['answered']):>8} {r['fps']:>7.1f} {bare[n]:>6.1f} "
            f"{ratio:>7.2f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['drop_rate']:>6.3f} "
            f"{r['latency_drift']:>6.2f} {r['send_ms']:>7.1f}"
        )
        result.update(
            {
                f"fps_{n}": _json_number(r["fps"], 2),
                # Below 30 * N when the clients themselves lack CPU time on a busy machine.
                f"sent_fps_{n}": _json_number(r["sent_fps"], 2),
                f"send_ms_{n}": _json_number(r["send_ms"], 2),
                f"bare_fps_{n}": round(bare[n], 2),
                f"service_vs_bare_{n}": _json_number(ratio, 3),
                f"p50_ms_{n}": _json_number(r["p50_ms"], 1),
                f"p99_ms_{n}": _json_number(r["p99_ms"], 1),
                f"drop_rate_{n}": _json_number(r["drop_rate"], 4),
                f"latency_drift_{n}": _json_number(r["latency_drift"], 3),
            }
        )
    result["peak_rss_mb"] = round(sampler.peak_bytes / 2**20, 1)
    if 4 in runs:
        ratio4, drift4 = result["service_vs_bare_4"], result["latency_drift_4"]
        result["goal_met_n4"] = bool(
            ratio4 is not None and drift4 is not None and ratio4 >= GOAL_RATIO_N4 and drift4 <= GOAL_DRIFT
        )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
