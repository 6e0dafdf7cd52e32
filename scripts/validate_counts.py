"""Rep counts and mean form scores of the shared clips, per backend, as a Markdown table.

Step 1 (slow, cached): run each backend over each clip in ``tests/data/videos`` (every
second frame, at most 640 pixels wide, as ``tests/unit/pose_analyzer/test_rep_counts.py``
does) and keep every person it found per frame (raw keypoints, boxes, scores) and the
frame cut test's flags in ``.cache/validation/v2/<backend>/<clip>.npz``.  Step 2 (fast):
replay them through a ``PoseEngine`` as the service runs it (the backend's tracker and
angle tolerance from the registry, the exercise's counter) and print the table of
docs/validation.md.  ``--calibrate`` prints how far YOLO's per-rep angle extremes lie
from MediaPipe's: the figures behind ``angle_tolerance_deg`` in detection/registry.py.

    python scripts/validate_counts.py [--backend mediapipe --backend yolo] [--refresh] [--calibrate]

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
# The cache format's version: a change of what is cached makes older files stale.
CACHE = ROOT / ".cache" / "validation" / "v2"
FRAME_STEP = 2
MAX_WIDTH = 640
# Calibration leaves out extremes under this: no elbow or knee folds that far (a curl's
# top reads 23 deg); YOLO reads 0-15 deg at a push-up's bottom when it puts the wrist on
# the elbow for several frames, a glitch, not a bias.
GLITCH_DEG = 20.0
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
    """Run ``backend`` over ``clip`` and save every person it found, per frame, to ``out``.

    The raw detections (before tracking and smoothing) are kept, so a replay runs the
    same tracker, smoothing, biomechanics and counter as the service does.  The frame cut
    test runs here too (it needs the images): its flags are kept with the frames.
    """
    import cv2

    from pose_analyzer.cuts import FrameCutDetector
    from pose_analyzer.keypoints import NUM_KEYPOINTS
    from pose_analyzer.types import Frame

    capture = cv2.VideoCapture(str(clip))
    fps = capture.get(cv2.CAP_PROP_FPS)
    detector = _detector(backend)
    detector.setup()
    cut_detector = FrameCutDetector()
    times: list[float] = []
    counts: list[int] = []
    cuts: list[bool] = []
    keypoints: list[Any] = []
    boxes: list[tuple[float, float, float, float]] = []
    scores: list[float] = []
    size = (0, 0)
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
            size = image.shape[:2]
            frame = Frame(image=np.asarray(image, dtype=np.uint8), timestamp=index / fps, index=index)
            people = detector.detect([frame])[0].people
            index += 1
            times.append(frame.timestamp)
            cuts.append(cut_detector.update(frame.image))
            counts.append(len(people))
            for p in people:
                keypoints.append(p.keypoints)
                boxes.append(p.box)
                scores.append(p.score)
    finally:
        capture.release()
        detector.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        out,
        times=np.array(times),
        counts=np.array(counts, dtype=np.int64),
        cuts=np.array(cuts, dtype=bool),
        keypoints=np.array(keypoints, dtype=np.float32).reshape(-1, NUM_KEYPOINTS, 3),
        boxes=np.array(boxes, dtype=np.float64).reshape(-1, 4),
        scores=np.array(scores, dtype=np.float64),
        size=np.array(size, dtype=np.int64),
    )


def replay(path: Path, backend: str, exercise: str, raw: bool = False) -> tuple[Any, list[Any]]:
    """A PoseEngine (the backend's tracker, smoothing, biomechanics, the exercise's counter)
    fed the cached detections of one clip, frame by frame, as ``detect_and_analyse`` does.

    The cut test ran on the images at extraction; the shared clips have no cut (the
    table says so if one was found), so the engine's own cut test is off here.  ``raw``:
    score without the backend's angle tolerance.  Returns the engine and its frames.
    """
    from pose_analyzer.detection.registry import angle_tolerance, create_tracker
    from pose_analyzer.engine import PoseEngine
    from pose_analyzer.types import Detections, Frame, Person

    data = np.load(path, allow_pickle=False)
    h, w = (int(v) for v in data["size"])
    image = np.empty((h, w, 3), dtype=np.uint8)
    engine = PoseEngine(
        create_tracker(backend),
        exercise=exercise,
        detect_cuts=False,
        angle_tolerance_deg=0.0 if raw else angle_tolerance(backend),
    )
    first = 0
    frames = []
    for i, (t, n) in enumerate(zip(data["times"], data["counts"], strict=True)):
        people = [
            Person(data["keypoints"][j].copy(), tuple(data["boxes"][j].tolist()), float(data["scores"][j]))
            for j in range(first, first + int(n))
        ]
        first += int(n)
        frames.append(
            engine.analyse(Frame(image=image, timestamp=float(t), index=i), Detections(people=people))
        )
    engine.cuts = [float(t) for t, c in zip(data["times"], data["cuts"], strict=True) if c]
    return engine, frames


def rep_extremes(engine: Any, frames: list[Any]) -> list[tuple[float, float, float]]:
    """(start, min, max) of the driving angle over each counted rep and the rest before it
    (the samples the scorer sees), after the scorer's 3-sample running median, from the
    per-frame angles of the person counted."""
    from scipy.ndimage import median_filter

    from pose_analyzer.exercises.counter import REST_WINDOW_S

    out = []
    driver = engine.exercise.driver
    reps = engine.reps()
    counted = {id(r) for r in reps}
    track = next((p.person.track_id for f in frames for p in f.people if id(p.new_rep) in counted), None)
    for rep in reps:
        values = []
        for frame in frames:
            person = next((p for p in frame.people if p.person.track_id == track), None)
            if person is None or not rep.start_time - REST_WINDOW_S <= frame.timestamp <= rep.end_time:
                continue
            if rep.side == "mean":
                both = [person.angles.get(f"{s}_{driver.angle}", math.nan) for s in ("left", "right")]
                seen = [v for v in both if not math.isnan(v)]
                values.append(sum(seen) / len(seen) if seen else math.nan)
            else:
                values.append(person.angles.get(f"{rep.side}_{driver.angle}", math.nan))
        series = np.array([v for v in values if math.isfinite(v)])
        if series.size >= 3:
            series = median_filter(series, size=3, mode="mirror")
            out.append((rep.start_time, float(series.min()), float(series.max())))
    return out


def calibrate() -> None:
    """Print how far YOLO's per-rep extremes of the driving angle lie from MediaPipe's on
    the reps both count (matched by start time) on the push-up, squat and curl clips: the
    figures behind ``angle_tolerance_deg`` in ``detection/registry.py``."""
    gaps = []
    for clip, exercise, _ in ROWS[1:4]:
        extremes = {}
        for backend in ("mediapipe", "yolo"):
            engine, frames = replay(CACHE / backend / f"{clip}.npz", backend, exercise, raw=True)
            extremes[backend] = rep_extremes(engine, frames)
        for ref in extremes["mediapipe"]:
            other = min(extremes["yolo"], key=lambda e: abs(e[0] - ref[0]), default=None)
            if other is None or abs(other[0] - ref[0]) > 1.0:
                continue
            for k, name in ((1, "min"), (2, "max")):
                if min(other[k], ref[k]) < GLITCH_DEG:
                    print(f"{clip} rep at {ref[0]:.2f} s {name}: left out, {other[k]:.1f} vs {ref[k]:.1f}")
                    continue
                gaps.append(abs(other[k] - ref[k]))
                print(f"{clip} rep at {ref[0]:.2f} s {name}: mediapipe {ref[k]:.1f}, yolo {other[k]:.1f}")
    g = np.array(gaps)
    print(
        json.dumps(
            {
                "extremes": int(g.size),
                "median_abs_diff_deg": round(float(np.median(g)), 1),
                "p75_abs_diff_deg": round(float(np.percentile(g, 75)), 1),
                "max_abs_diff_deg": round(float(g.max()), 1),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--backend", action="append", choices=("mediapipe", "yolo"))
    parser.add_argument("--refresh", action="store_true", help="run the models again even if cached")
    parser.add_argument("--clip", action="append", help="only these clips (file names)")
    parser.add_argument("--calibrate", action="store_true", help="print YOLO's angle gaps to MediaPipe")
    args = parser.parse_args()
    backends = args.backend or ["mediapipe", "yolo"]
    rows_wanted = [r for r in ROWS if not args.clip or r[0] in args.clip]
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "0")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(ROOT / ".cache" / "ultralytics"))
    os.environ.setdefault("MPLCONFIGDIR", str(ROOT / ".cache" / "matplotlib"))
    if args.calibrate:
        calibrate()
        return
    rows = []
    per_rep: dict[str, dict[str, list[float | None]]] = {}
    for clip, exercise, truth in rows_wanted:
        cells = [exercise, clip, str(truth)]
        for backend in backends:
            path = CACHE / backend / f"{clip}.npz"
            if args.refresh or not path.is_file():
                extract(backend, VIDEOS / clip, path)
            engine, _ = replay(path, backend, exercise)
            reps = engine.reps()
            scores = [r.score for r in reps if r.score is not None and math.isfinite(r.score)]
            mean = f"{sum(scores) / len(scores):.1f}" if scores else "-"
            count = str(len(reps))
            if engine.exercise.driver.side == "each" and reps:
                count += " (" + ", ".join(f"{k} {v}" for k, v in sorted(engine.count_by_side().items())) + ")"
            if engine.cuts:
                count += f" ({len(engine.cuts)} cuts found)"
            cells += [count, mean, str(len(engine.rejected()))]
            per_rep.setdefault(f"{clip}:{exercise}", {})[backend] = [
                r.score if r.score is not None and math.isfinite(r.score) else None for r in reps
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
