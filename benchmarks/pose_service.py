"""The pose service under N WebSocket clients at 30 fps each, against the bare backend loop, in one run.

Frames: ``multicam/videos/cam01..04.mp4`` downscaled to ``--max-width`` and encoded as JPEG
once, before any clock starts; each clip is played forward then backward (no jump at the
loop), client ``i`` streams camera ``i % 4``.

1. Bare backend loop (this process, no service): the same streams as the service run, N for
   N clients, each what a service stream holds (one ``PoseEngine`` with the same tracker and
   exercise, and for MediaPipe its own stateful detector; YOLO streams share one model per
   thread, as the service's streams share one), stream ``i`` on camera ``i % 4``; each frame is
   ``decode_frame`` (the service's checked ``cv2.imdecode``) + ``detect_and_analyse`` (detect,
   then track/smooth/angles/reps): what the service does per frame minus the WebSocket, JSON and
   database.  The streams are spread over as many worker threads as the machine has cores (at
   most one per stream), each thread analysing one frame of each of its streams in turn, because
   the service also analyses several streams at once in worker threads.
   ``bare_fps_N``, the baseline of ``service_vs_bare_N``, is that figure measured right before
   the run with N clients (``bare_fps``: their median); ``bare_fps_serial`` is one stream on one
   thread, for reference.  ``bare_fps_cores_N`` (measured beside it) is the machine's best case:
   one stream per core, whatever N, so ``service_vs_cores_N = fps_N / bare_fps_cores_N`` also
   carries what N streams cost the backend itself.  With MediaPipe that cost is large: 16
   landmarkers rotating over 2 cores do about 0.82-0.85 of the frames 2 do (70.6-73.8 against
   86.1-87.6 fps here), the same with every stream advancing 1 or 6 frames between its turns, so
   it is the instances (each its own graph and buffers), not the tracking; until that baseline
   counted the same streams as the service, ``service_vs_bare_16`` charged it to the service.
2. The real service: ``python -m pose_analyzer`` on a free 127.0.0.1 port (MediaPipe,
   SQLite and logs in a temporary directory), fed by N clients for ``--seconds`` each.
   Each client sends ``start`` and waits for ``started`` (detector set up), all clients
   then start together; a sender task sends a ``frame`` header (capture time = send time)
   and a JPEG every 1/30 s without waiting for answers (the service is latest-frame-wins),
   a receiver task collects the answers; at the end ``stop`` and the ``stopped`` totals.

Per N: ``fps_N`` (answers received within the window, all streams, per second),
``service_vs_bare_N`` (``fps_N / bare_fps_N``; goal >= 0.9 for N=4), ``p50_ms_N``/``p99_ms_N``
(answer receive time minus the client's send time of that frame), ``p99_ms_steady_N`` (the same
without each client's last frame: nothing newer replaces it, so after the clients stop together
the N last frames wait for their turns at the compute slots, up to one round of all N, and once they
are over 1 % of the answers they set ``p99_ms_N``), ``drop_rate_N``
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

The parts live in ``benchmarks/_pose_service/`` (frames, bare loop, service process, clients and
their figures, report); this script parses the options and runs them in order.

The last output line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

from _pose_service.bare import bare_fps
from _pose_service.clients import run_clients, service_figures
from _pose_service.frames import CAMERAS, DATA, SEND_FPS, encode_clip
from _pose_service.report import goal_met_n4, per_client_count
from _pose_service.service import RssSampler, running_service

from pose_analyzer.detection.registry import BACKENDS
from pose_analyzer.streaming.decode import decode_frame

# ``benchmarks/multiview_service.py`` imports these from here.
__all__ = ["DATA", "encode_clip", "main", "running_service"]


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
    serial = bare_fps(clips, 1, 1, args.backend, exercise, args.bare_seconds)
    print(f"bare loop: {serial:.1f} fps on 1 thread ({time.monotonic() - began:.0f} s)", file=sys.stderr)

    runs: dict[int, dict[str, float]] = {}
    bare: dict[int, float] = {}
    bare_cores: dict[int, float] = {}
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
                bare[n] = bare_fps(clips, n, cores, args.backend, exercise, args.bare_seconds)
                bare_cores[n] = (
                    bare[n]  # N streams on N cores: the same loop
                    if n == cores
                    else bare_fps(clips, cores, cores, args.backend, exercise, args.bare_seconds)
                )
                print(
                    f"bare loop: {bare[n]:.1f} fps for {n} streams, {bare_cores[n]:.1f} fps for "
                    f"{cores} streams, on {cores} threads",
                    file=sys.stderr,
                )
                logs, t0 = asyncio.run(run_clients(url, clips, n, exercise, args.seconds))
                errors = [e for log in logs for e in log.errors]
                if errors:
                    print(f"N={n}: {len(errors)} error answers, first: {errors[0]}", file=sys.stderr)
                runs[n] = service_figures(logs, t0, args.seconds)
                print(
                    f"N={n:2d}: {runs[n]['fps']:.1f} fps ({time.monotonic() - began:.0f} s)", file=sys.stderr
                )
        finally:
            sampler.stop()

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
    result.update(per_client_count(runs, bare, bare_cores))
    result["peak_rss_mb"] = round(sampler.peak_bytes / 2**20, 1)
    if 4 in runs:
        result["goal_met_n4"] = goal_met_n4(result)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
