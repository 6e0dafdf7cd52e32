"""RSS of a real pose service (MediaPipe) before, during and after rounds of 16 streams that come and go.

A ``python -m pose_analyzer`` process on a free loopback port (SQLite and logs in a temporary
directory); each round opens 16 WebSocket streams at once (cameras ``multicam/cam01..04``, a
few frames each, every frame answered), then closes them; RSS of the process tree is read
after a settle time before the first round and after each round.

    python benchmarks/pose_rss.py [--rounds 3] [--frames 6] [--settle 5]

The last output line is one JSON object: ``before_mb``, ``peak_N_mb``, ``after_N_mb``,
``growth_N_mb`` (after round N minus before) and ``max_growth_mb`` (the goal: at most 150 MB).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.harness import RunningService, free_port, start_process  # noqa: E402
from tests.e2e.test_pose_streams import encoded_frames  # noqa: E402

STREAMS = 16


def rss_mb(process: psutil.Process) -> float:
    total: int = sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])
    return total / 2**20


def stream(service: RunningService, name: str, frames: list[tuple[float, bytes]]) -> None:
    with connect(service.url.replace("http://", "ws://") + f"/ws/streams/{name}", open_timeout=60) as ws:
        for capture_ts, data in frames:
            ws.send(json.dumps({"type": "frame", "capture_ts": capture_ts}))
            ws.send(data)
            ws.recv(timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=6, help="frames per stream")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before each RSS reading")
    args = parser.parse_args()
    data = ROOT / "tests/data/multicam/videos"
    cameras = [encoded_frames(data / f"cam0{i}.mp4", step=3, limit=args.frames) for i in range(1, 5)]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        service = start_process(
            "pose_analyzer",
            "POSE_",
            free_port(),
            work,
            backend="mediapipe",
            database_url=f"sqlite:///{work}/pose.db",
        )
        try:
            process = psutil.Process(service.process.pid)
            time.sleep(args.settle)  # let the warm-up's garbage go
            result = {"before_mb": rss_mb(process)}
            for n in range(1, args.rounds + 1):
                threads = [
                    threading.Thread(target=stream, args=(service, f"s{i}", cameras[i % 4]))
                    for i in range(STREAMS)
                ]
                for t in threads:
                    t.start()
                peak = 0.0
                while any(t.is_alive() for t in threads):
                    peak = max(peak, rss_mb(process))
                    time.sleep(0.2)
                time.sleep(args.settle)
                result[f"peak_{n}_mb"] = peak
                result[f"after_{n}_mb"] = rss_mb(process)
                result[f"growth_{n}_mb"] = result[f"after_{n}_mb"] - result["before_mb"]
        finally:
            service.stop()
    result["max_growth_mb"] = max(result[f"growth_{n}_mb"] for n in range(1, args.rounds + 1))
    print(json.dumps({"streams": STREAMS, **{k: round(v, 1) for k, v in result.items()}}))


if __name__ == "__main__":
    main()
