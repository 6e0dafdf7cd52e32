"""Multi-person 3D cost: associating, triangulating and analysing every person of a group.

Real: the first ``--frames`` groups of ``multicam/videos/cam01..04.mp4`` (the Pose2Sim demo),
decoded and downscaled to ``--max-width`` before any clock starts; YOLO (ONNX) detects the
four frames of a group in one batch (two people: the athlete, and an operator whom cam01 and
cam02 see); then ``people3d.LivePeople3D`` (epipolar association, one ``Triangulator`` call per
person, stable ids, per-person One Euro smoothing and ``analyse_pose_3d``), as a live
multi-person session runs it.  ``people3d_vs_detection`` = that 3D time / the detection time,
summed over the same groups (issue 12's goal for the single-person 3D work: at most 0.02).

Synthetic: three people projected through the same rig with 2 px noise, in shuffled order;
``association_ms`` (grouping alone) and ``people3d_ms`` (grouping and triangulating all three)
against ``single_person_ms``, one person's ``Triangulator`` call on the same data.

    python benchmarks/association.py [--frames 40] [--warmup 5] [--max-width 640]

The last output line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from pose_analyzer.detection.yolo import YoloDetector
from pose_analyzer.keypoints import NUM_KEYPOINTS
from pose_analyzer.multiview.calibration_io import read_rig
from pose_analyzer.multiview.offline import match_videos
from pose_analyzer.multiview.people3d import LivePeople3D, MultiPersonTriangulator
from pose_analyzer.multiview.rig import CameraRig
from pose_analyzer.multiview.triangulation import Triangulator
from pose_analyzer.video_io import iter_frames

REPO_ROOT = Path(__file__).resolve().parents[1]
MULTICAM = REPO_ROOT / "tests" / "data" / "multicam"
sys.path.insert(0, str(REPO_ROOT))
from tests.multiview_synthetic import CAPTURE_CENTRE, STANDING, project_all  # noqa: E402


def measure_real(frames: int, warmup: int, max_width: int) -> dict[str, Any]:
    """``people3d_vs_detection`` on the demo clip, in ms per group."""
    rig = read_rig(MULTICAM / "Calib.qca.txt")
    videos = match_videos([MULTICAM / "videos" / f"cam0{i}.mp4" for i in range(1, 5)], rig)
    streams = [iter_frames(v.info, max_width) for v in videos]
    groups = [list(g) for _, g in zip(range(frames), zip(*streams, strict=False), strict=False)]
    detector = YoloDetector()
    detector.setup()
    live = LivePeople3D(CameraRig(tuple(v.camera for v in videos)))
    detect_s: list[float] = []
    three_d_s: list[float] = []
    people: list[int] = []
    try:
        for index, group in enumerate(groups):
            start = time.perf_counter()
            found = detector.detect(group)
            detected = time.perf_counter()
            views = {}
            for video, frame, det in zip(videos, group, found, strict=True):
                arr = np.array([p.keypoints for p in det.people], dtype=np.float64)
                arr = arr.reshape(-1, NUM_KEYPOINTS, 3)
                down = video.info.width / frame.image.shape[1], video.info.height / frame.image.shape[0]
                arr[..., :2] *= np.array(down) * np.array(video.scale)
                views[video.camera.name] = arr
            prepared = time.perf_counter()
            moment = live(views, index / videos[0].info.fps)
            done = time.perf_counter()
            if index >= warmup:
                detect_s.append(detected - start)
                three_d_s.append(done - prepared)
                people.append(len(moment))
    finally:
        detector.close()
    return {
        "groups": len(detect_s),
        "people_per_group": statistics.mean(people),
        "detect_ms": 1000 * statistics.mean(detect_s),
        "people3d_ms": 1000 * statistics.mean(three_d_s),
        "people3d_vs_detection": sum(three_d_s) / sum(detect_s),
        "ids": sorted(live.triangulate.ids.known()),
    }


def measure_synthetic(repeats: int) -> dict[str, Any]:
    """Three shuffled noisy people: association, all three triangulated, one person alone (ms)."""
    rig = read_rig(MULTICAM / "Calib.qca.txt")
    rng = np.random.default_rng(0)
    offsets = [0.45 * np.array([np.cos(a), np.sin(a), 0.0]) for a in (0.3, 2.4, 4.5)]
    people = [STANDING + CAPTURE_CENTRE + offset for offset in offsets]
    noisy = [project_all(rig, p) + rng.normal(0.0, 2.0, (len(rig), NUM_KEYPOINTS, 2)) for p in people]
    views = {}
    for c, cam in enumerate(rig):
        order = rng.permutation(len(people))
        views[cam.name] = np.array([np.column_stack([noisy[i][c], np.ones(NUM_KEYPOINTS)]) for i in order])
    multi = MultiPersonTriangulator(rig)
    single = Triangulator(rig, rig.names)

    def timed(call: Any) -> float:
        call()  # warm
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            samples.append(time.perf_counter() - start)
        return 1000 * statistics.median(samples)

    association = timed(lambda: multi.associator.associate(views))
    people3d = timed(lambda: multi(views, 0.0))
    alone = timed(lambda: single(noisy[0], np.ones((len(rig), NUM_KEYPOINTS))))
    return {
        "association_ms": association,
        "people3d_ms": people3d,
        "single_person_ms": alone,
        "people3d_vs_single_person": people3d / alone,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--max-width", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    real = measure_real(args.frames, args.warmup, args.max_width)
    print("real:", json.dumps(real))
    synthetic = measure_synthetic(args.repeats)
    print("synthetic:", json.dumps(synthetic))
    print(json.dumps({"benchmark": "association", **real, "synthetic": synthetic}))


if __name__ == "__main__":
    main()
