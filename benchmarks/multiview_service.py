"""A 4-camera 3D session through the real service against the same 4 streams in 2D, in one run.

Frames: ``multicam/videos/cam01..04.mp4`` (synchronised, 60 fps) downscaled to ``--max-width``
and encoded as JPEG once, before any clock starts, played forward then backward.  The shared
rig (``multicam/Calib.qca.txt``) is uploaded over REST (``PUT /api/rigs/demo``).

One ``python -m pose_analyzer`` (MediaPipe, SQLite in a temporary directory) serves
alternating rounds of ``--seconds`` each, ``--rounds`` of each kind:

- 2D: four clients, client ``i`` streams camera ``i``, each keeping ``--in-flight`` (2, as the
  browser page does) frames unanswered: a ``frame`` header with capture time ``k / 60`` and the
  JPEG, the next one as each answer comes;
- 3D: the same, with ``start`` naming the rig and the client's camera, the four in one session
  (the first client's; the others join it): each answer waits for its synchronised group.

A client replaces the frames an answer says were dropped (as the page does; ``--no-refill``: it
does not, and its window shrinks).  ``fps_2d_4streams``: frame sets per second in 2D (answers of
all streams / 4 / s); ``fps_3d_4cams``: distinct 3D moments (``pose3d.seq``, groups of two
cameras or more) per second in 3D; ``vs_2d_4streams``: their ratio (medians over rounds; goal
>= 0.95); ``fps_3d_complete_groups`` and ``vs_2d_complete_groups`` count only moments seen by all
four cameras (the cameras of a 3D session drop the same moments, ``FrameGrouper.choose``, so
under load most groups stay complete; a camera dropping its own frames would leave them with
three).  Also the 3D rounds' ``complete_fraction`` (moments seen by all four cameras),
``reprojection_mean_px`` and ``reprojection_p95_px``, ``lateness_p95_ms`` (a camera's frame
arriving after its group's first) and ``rep_messages`` (``rep`` announcements received: the
protocol's per-rep message, counted, not taken for an answer).  Clients run on the
same cores as the service.

    python benchmarks/multiview_service.py [--seconds 15] [--rounds 2] [--max-width 480] [--in-flight 2]

The last output line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pose_service import DATA, encode_clip, running_service

CAMERAS = ("cam01", "cam02", "cam03", "cam04")
CLIP_FPS = 60.0


def upload_rig(url: str) -> None:
    body = (DATA / "multicam/Calib.qca.txt").read_bytes()
    request = urllib.request.Request(
        f"{url}/api/rigs/demo", body, {"Content-Type": "application/xml"}, method="PUT"
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert resp.status in (200, 201), resp.status


async def _client(
    url: str,
    clip: list[bytes],
    start: dict[str, Any],
    clock: asyncio.Barrier,
    seconds: float,
    in_flight: int,
    refill: bool,
    answers: list[dict[str, Any]],
    reps: list[dict[str, Any]],
) -> None:
    async with connect(url, max_size=None, open_timeout=60) as ws:
        await ws.send(json.dumps(start))
        started = json.loads(await ws.recv())
        assert started["type"] == "started", started
        await clock.wait()  # every client started: the round's clock starts now
        until = time.perf_counter() + seconds
        sent = 0

        async def send_next() -> None:
            nonlocal sent
            await ws.send(json.dumps({"type": "frame", "frame_id": sent + 1, "capture_ts": sent / CLIP_FPS}))
            await ws.send(clip[sent % len(clip)])
            sent += 1

        for _ in range(in_flight):
            await send_next()
        while True:
            answer = json.loads(await ws.recv())
            if answer["type"] == "rep":  # a rep announced once committed: counted, not an answer
                reps.append(answer)
                continue
            assert answer["type"] == "frame", answer
            if time.perf_counter() >= until:
                break  # the rest are drained by stop
            answers.append(answer)
            # Frames the service replaced get no answer: the page sends as many new ones.
            for _ in range(1 + (answer["dropped"] if refill else 0)):
                await send_next()
        await ws.send(json.dumps({"type": "stop"}))
        while json.loads(await ws.recv())["type"] != "stopped":
            pass


async def _round(
    base: str,
    clips: dict[str, list[bytes]],
    seconds: float,
    rig: str | None,
    tag: str,
    in_flight: int,
    refill: bool,
) -> dict[str, Any]:
    """One round; returns the answers of each camera and the round's length in seconds."""
    answers: dict[str, list[dict[str, Any]]] = {cam: [] for cam in CAMERAS}
    reps: list[dict[str, Any]] = []
    starts = {cam: {"type": "start"} for cam in CAMERAS}
    if rig is not None:
        # The first client's session, joined by the others: started before the clock starts.
        async with connect(f"{base}/{tag}-probe", open_timeout=60) as ws:
            await ws.send(json.dumps({"type": "start"}))
            session = json.loads(await ws.recv())["session_id"]
            await ws.send(json.dumps({"type": "stop"}))
            while json.loads(await ws.recv())["type"] != "stopped":
                pass
        starts = {cam: {"type": "start", "rig": rig, "camera": cam, "session_id": session} for cam in CAMERAS}
    clock = asyncio.Barrier(len(CAMERAS))
    await asyncio.gather(
        *(
            _client(
                f"{base}/{tag}-{cam}",
                clips[cam],
                starts[cam],
                clock,
                seconds,
                in_flight,
                refill,
                answers[cam],
                reps,
            )
            for cam in CAMERAS
        )
    )
    return {"answers": answers, "reps": len(reps), "seconds": seconds}


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-width", type=int, default=480)
    parser.add_argument("--no-refill", action="store_true", help="do not replace frames the service dropped")
    parser.add_argument("--in-flight", type=int, default=2, help="unanswered frames per client (the page: 2)")
    args = parser.parse_args()
    clips = {cam: encode_clip(DATA / f"multicam/videos/{cam}.mp4", args.max_width) for cam in CAMERAS}
    fps_2d: list[float] = []
    fps_3d: list[float] = []
    slowest_2d: list[float] = []
    fps_3d_complete: list[float] = []
    moments: dict[tuple[int, int], dict[str, Any]] = {}
    rep_messages = 0
    with tempfile.TemporaryDirectory() as tmp, running_service(Path(tmp), "mediapipe") as (url, _):
        upload_rig(url)
        base = url.replace("http://", "ws://") + "/ws/streams"
        for r in range(args.rounds):
            flat = asyncio.run(
                _round(base, clips, args.seconds, None, f"r{r}-2d", args.in_flight, not args.no_refill)
            )
            answered = sum(len(a) for a in flat["answers"].values())
            rep_messages += flat["reps"]
            fps_2d.append(answered / len(CAMERAS) / flat["seconds"])
            slowest_2d.append(min(len(a) for a in flat["answers"].values()) / flat["seconds"])
            deep = asyncio.run(
                _round(base, clips, args.seconds, "demo", f"r{r}-3d", args.in_flight, not args.no_refill)
            )
            seen = {
                a["pose3d"]["seq"]: a["pose3d"]
                for got in deep["answers"].values()
                for a in got
                if a["pose3d"]
            }
            fps_3d.append(len(seen) / deep["seconds"])
            whole = [m for m in seen.values() if len(m["cameras"]) == len(CAMERAS)]
            fps_3d_complete.append(len(whole) / deep["seconds"])
            moments.update({(r, seq): m for seq, m in seen.items()})
            rep_messages += deep["reps"]
            print(
                f"round {r}: 2D {fps_2d[-1]:.2f} frame sets/s (slowest stream {slowest_2d[-1]:.2f} fps), "
                f"3D {fps_3d[-1]:.2f} moments/s, {fps_3d_complete[-1]:.2f} with all four cameras "
                f"({len(whole) / len(seen) if seen else 0:.0%})",
                flush=True,
            )
    complete = [m for m in moments.values() if len(m["cameras"]) == len(CAMERAS)]
    errors = [m["reprojection_mean_px"] for m in moments.values() if m["reprojection_mean_px"] is not None]
    lateness = [v for m in moments.values() for v in m["lateness_ms"].values()]
    f2, f3 = statistics.median(fps_2d), statistics.median(fps_3d)
    result = {
        "benchmark": "multiview_service",
        "cpu_count": os.cpu_count(),
        "seconds": args.seconds,
        "rounds": args.rounds,
        "max_width": args.max_width,
        "in_flight": args.in_flight,
        "fps_2d_4streams": round(f2, 3),
        "fps_3d_4cams": round(f3, 3),
        "vs_2d_4streams": round(f3 / f2, 3) if f2 else None,
        "fps_3d_complete_groups": round(statistics.median(fps_3d_complete), 3),
        "vs_2d_complete_groups": round(statistics.median(fps_3d_complete) / f2, 3) if f2 else None,
        "refill": not args.no_refill,
        "fps_2d_slowest_stream": round(statistics.median(slowest_2d), 3),
        "vs_2d_slowest_stream": round(f3 / statistics.median(slowest_2d), 3),
        "goal_vs_2d_4streams": 0.95,
        "moments": len(moments),
        "complete_fraction": round(len(complete) / len(moments), 3) if moments else None,
        "reprojection_mean_px": round(statistics.fmean(errors), 3) if errors else None,
        "reprojection_p95_px": round(_p95(errors), 3) if errors else None,
        "lateness_p95_ms": round(_p95(lateness), 3) if lateness else None,
        "rep_messages": rep_messages,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
