"""What the decode checks cost: ``decode_frame`` with the JPEG completeness check against without it.

The pixel limit reads a few header bytes and costs nothing measurable; the completeness check
(``jpeg_is_complete``) decodes each JPEG twice more at 1/8 scale (progressive ones at full scale).
Frames are real video frames at their own size, JPEG quality 85 like the streaming clients;
the cases take turns round by round so drift in the machine's load favours neither.  The last
output line is one JSON object: per clip, milliseconds per frame and the ratio checked/unchecked.

    python benchmarks/decode_checks.py --frames 20 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import cv2

from pose_analyzer.streaming.decode import decode_frame
from pose_analyzer.streaming.image_header import DecodeLimits

VIDEOS = Path(__file__).resolve().parents[1] / "tests" / "data"
CLIPS = {
    "cam01_1080x1920": VIDEOS / "multicam/videos/cam01.mp4",
    "pushup_1280x720": VIDEOS / "videos/pushup_4reps.mp4",
    "curl_960x540": VIDEOS / "videos/curl_3reps_starts_midrep.mp4",
}


def jpeg_frames(video: Path, count: int, progressive: bool = False) -> list[bytes]:
    capture = cv2.VideoCapture(str(video))
    frames: list[bytes] = []
    flags = [cv2.IMWRITE_JPEG_QUALITY, 85, cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)]
    while len(frames) < count:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(cv2.imencode(".jpg", image, flags)[1].tobytes())
    capture.release()
    return frames


def ms_per_frame(frames: list[bytes], limits: DecodeLimits) -> float:
    start = time.perf_counter()
    for data in frames:
        decode_frame(data, limits)
    return (time.perf_counter() - start) * 1000.0 / len(frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    cases = {name: jpeg_frames(path, args.frames) for name, path in CLIPS.items()}
    cases["cam01_1080x1920_progressive"] = jpeg_frames(CLIPS["cam01_1080x1920"], args.frames, True)
    plain, checked = DecodeLimits(verify_jpeg=False), DecodeLimits()
    results: dict[str, Any] = {}
    for name, frames in cases.items():
        ms_per_frame(frames[:2], checked)  # warm
        off, on = [], []
        for _ in range(args.rounds):
            off.append(ms_per_frame(frames, plain))
            on.append(ms_per_frame(frames, checked))
        results[name] = {
            "unchecked_ms": round(statistics.median(off), 2),
            "checked_ms": round(statistics.median(on), 2),
            "ratio": round(statistics.median(on) / statistics.median(off), 3),
        }
        print(name, results[name], flush=True)
    print(json.dumps({"benchmark": "decode_checks", "frames": args.frames, "rounds": args.rounds, **results}))


if __name__ == "__main__":
    main()
