"""Rep counts and mean form scores of the shared clips, per backend, as a Markdown table.

Step 1 (slow, cached): run each backend over each clip in ``tests/data/videos`` (every
second frame, at most 640 pixels wide, as ``tests/unit/pose_analyzer/test_rep_counts.py``
does) and keep the main person's smoothed keypoints, angles and measures per frame in
``.cache/validation/<backend>/<clip>.npz``.  Step 2 (fast): replay the exercise's rep
counter over the cached frames and print the table of docs/validation.md.

    python scripts/validate_counts.py [--backend mediapipe --backend yolo] [--refresh]

Importing this module does nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VIDEOS = ROOT / "tests" / "data" / "videos"
CACHE = ROOT / ".cache" / "validation"
FRAME_STEP = 2
MAX_WIDTH = 640
# (clip, exercise, count by eye); see tests/data/README.md.  The kata's punches were
# counted by eye on a contact sheet of every third frame: three punches (at about 3.4 s,
# 6.8 s and 8.2 s, each held), besides blocks and turns; no kicks.
ROWS: tuple[tuple[str, str, int], ...] = (
    ("bridging_1rep.mp4", "glute_bridge", 1),
    ("pushup_4reps.mp4", "push_up", 4),
    ("squat_8reps.mp4", "squat", 8),
    ("curl_3reps_starts_midrep.mp4", "biceps_curl", 3),
    ("karate_kata_10s.mp4", "front_kick", 0),
    ("karate_kata_10s.mp4", "roundhouse_kick", 0),
    ("karate_kata_10s.mp4", "straight_punch", 3),
)


def _detector(backend: str) -> Any:
    if backend == "mediapipe":
        from pose_analyzer.detection.mediapipe import MediaPipeDetector

        return MediaPipeDetector(static_image_mode=False)
    from pose_analyzer.detection.yolo import YoloDetector

    return YoloDetector(cache_dir=ROOT / ".cache" / "onnx")


def extract(backend: str, clip: Path, out: Path) -> None:
    """Run ``backend`` over ``clip`` and save the main person's per-frame analysis to ``out``."""
    import cv2

    from pose_analyzer.biomechanics.angles import ANGLE_NAMES
    from pose_analyzer.engine import PoseEngine
    from pose_analyzer.types import Detections, Frame

    capture = cv2.VideoCapture(str(clip))
    fps = capture.get(cv2.CAP_PROP_FPS)
    detector = _detector(backend)
    detector.setup()
    engine = PoseEngine(detector)
    times: list[float] = []
    keypoints: list[Any] = []
    angles: list[list[float]] = []
    measures: list[dict[str, float]] = []
    index = 0
    try:
        while True:
            if index % FRAME_STEP:
                if not capture.grab():
                    break
                index += 1
                continue
            ok, image = capture.read()
            if not ok:
                break
            h, w = image.shape[:2]
            if w > MAX_WIDTH:
                image = cv2.resize(image, (MAX_WIDTH, round(h * MAX_WIDTH / w)), interpolation=cv2.INTER_AREA)
            frame = Frame(image=np.asarray(image, dtype=np.uint8), timestamp=index / fps, index=index)
            people = detector.detect([frame])[0].people
            index += 1
            if not people:
                continue
            # The main person: the largest confident box (YOLO also reports bystanders and ghosts).
            main = max(people, key=lambda p: p.score * (p.box[2] - p.box[0]) * (p.box[3] - p.box[1]))
            main.track_id = 0
            person = engine.analyse(frame, Detections(people=[main])).people[0]
            times.append(frame.timestamp)
            keypoints.append(person.person.keypoints)
            angles.append([person.angles[n] for n in ANGLE_NAMES])
            measures.append(person.measures)
    finally:
        capture.release()
        detector.close()
    names = sorted({k for m in measures for k in m})
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        out,
        times=np.array(times),
        keypoints=np.array(keypoints, dtype=np.float32),
        angle_names=np.array(ANGLE_NAMES),
        angles=np.array(angles),
        measure_names=np.array(names),
        measures=np.array([[m.get(n, math.nan) for n in names] for m in measures]),
    )


def replay(path: Path, exercise: str) -> Any:
    """A RepCounter fed the cached frames of one clip."""
    from pose_analyzer.exercises import RepCounter, load_exercise

    data = np.load(path, allow_pickle=False)
    counter = RepCounter(load_exercise(exercise))
    angle_names = [str(n) for n in data["angle_names"]]
    measure_names = [str(n) for n in data["measure_names"]]
    for t, kps, a, m in zip(data["times"], data["keypoints"], data["angles"], data["measures"], strict=True):
        counter.update(
            float(t),
            dict(zip(angle_names, a.tolist(), strict=True)),
            dict(zip(measure_names, m.tolist(), strict=True)),
            keypoints=kps,
        )
    return counter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--backend", action="append", choices=("mediapipe", "yolo"))
    parser.add_argument("--refresh", action="store_true", help="run the models again even if cached")
    parser.add_argument("--clip", action="append", help="only these clips (file names)")
    args = parser.parse_args()
    backends = args.backend or ["mediapipe", "yolo"]
    rows_wanted = [r for r in ROWS if not args.clip or r[0] in args.clip]
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "0")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(ROOT / ".cache" / "ultralytics"))
    os.environ.setdefault("MPLCONFIGDIR", str(ROOT / ".cache" / "matplotlib"))
    rows = []
    per_rep: dict[str, dict[str, list[float | None]]] = {}
    for clip, exercise, truth in rows_wanted:
        cells = [exercise, clip, str(truth)]
        for backend in backends:
            path = CACHE / backend / f"{clip}.npz"
            if args.refresh or not path.is_file():
                extract(backend, VIDEOS / clip, path)
            counter = replay(path, exercise)
            scores = [r.score for r in counter.reps if r.score is not None and math.isfinite(r.score)]
            mean = f"{sum(scores) / len(scores):.1f}" if scores else "-"
            count = str(counter.count)
            if counter.exercise.driver.side == "each" and counter.count:
                count += (
                    " (" + ", ".join(f"{k} {v}" for k, v in sorted(counter.count_by_side().items())) + ")"
                )
            cells += [count, mean, str(len(counter.rejected))]
            per_rep.setdefault(f"{clip}:{exercise}", {})[backend] = [
                r.score if r.score is not None and math.isfinite(r.score) else None for r in counter.reps
            ]
        rows.append(cells)
    header = ["exercise", "clip", "truth"]
    for backend in backends:
        header += [f"{backend} count", f"{backend} mean score", f"{backend} rejected"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for cells in rows:
        print("| " + " | ".join(cells) + " |")
    print(json.dumps({"per_rep_scores": per_rep}))


if __name__ == "__main__":
    main()
