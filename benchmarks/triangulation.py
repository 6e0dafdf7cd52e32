"""3D cost: triangulating and analysing one synchronised 4-camera group, against detecting it.

Frames: the first ``--frames`` of ``multicam/videos/cam01..04.mp4`` (the Pose2Sim demo,
one person, four synchronised cameras), decoded and downscaled to ``--max-width`` before any
clock starts.  Each camera has its own MediaPipe instance, as a live session or the offline
CLI does.  Per group, the four ``detect`` calls are timed together, then the 3D work on
their output: ``Triangulator`` (undistortion, weighted DLT, left/right swap check, outlier
rejection, reprojection errors) plus the bone-length prior (``BoneLengthPrior``: learn the
segment lengths, refine the limbs, re-measure their errors) plus ``analyse_pose_3d`` (angles,
measures, segment lengths, centre of mass) plus the live One Euro smoothing.  The first
``--warmup`` groups are left out.  ``step_ms_per_group`` gives the median of each of those
four steps (they run right after MediaPipe, with cold caches: several times what they cost
replayed alone).

Goal (issue 12): ``triangulation_vs_detection`` = 3D time / detection time, summed over the
same groups, at most 0.02.

    python benchmarks/triangulation.py [--frames 60] [--warmup 5] [--max-width 720]

The last output line is one JSON object.  Each figure comes from one ``measure_*`` function
returning a dict; further figures (the live service's ``fps_3d_4cams``) add a function.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from pose_analyzer.detection.mediapipe import MediaPipeDetector
from pose_analyzer.keypoints import NUM_KEYPOINTS
from pose_analyzer.multiview.biomechanics3d import TrajectorySmoother3D, analyse_pose_3d
from pose_analyzer.multiview.bones import BoneLengthPrior
from pose_analyzer.multiview.calibration_io import read_rig
from pose_analyzer.multiview.offline import CameraVideo, match_videos
from pose_analyzer.multiview.rig import CameraRig
from pose_analyzer.multiview.triangulation import Triangulator
from pose_analyzer.types import Frame
from pose_analyzer.video_io import iter_frames

REPO_ROOT = Path(__file__).resolve().parents[1]
MULTICAM = REPO_ROOT / "tests" / "data" / "multicam"
GOAL = 0.02


def load_groups(frames: int, max_width: int) -> tuple[list[CameraVideo], list[list[Frame]]]:
    """The paired cameras and the first ``frames`` synchronised groups, decoded."""
    rig = read_rig(MULTICAM / "Calib.qca.txt")
    videos = match_videos([MULTICAM / "videos" / f"cam0{i}.mp4" for i in range(1, 5)], rig)
    streams = [iter_frames(v.info, max_width) for v in videos]
    groups = [list(group) for _, group in zip(range(frames), zip(*streams, strict=False), strict=False)]
    return videos, groups


def measure_triangulation(
    videos: list[CameraVideo], groups: list[list[Frame]], warmup: int
) -> dict[str, Any]:
    """``triangulation_vs_detection`` and its parts, in ms per group."""
    detectors = [MediaPipeDetector() for _ in videos]
    for detector in detectors:
        detector.setup()
    rig = CameraRig(tuple(v.camera for v in videos))
    tri = Triangulator(rig, rig.names)
    smoother = TrajectorySmoother3D()
    bones = BoneLengthPrior()
    detect_s: list[float] = []
    three_d_s: list[float] = []
    # Per step of the 3D work: triangulate, bone-length prior, smoothing, analysis.
    steps_s: list[tuple[float, float, float, float]] = []
    try:
        for index, group in enumerate(groups):
            points2d = np.full((len(videos), NUM_KEYPOINTS, 2), np.nan)
            conf = np.zeros((len(videos), NUM_KEYPOINTS))
            start = time.perf_counter()
            found = [
                detector.detect([frame])[0].people for detector, frame in zip(detectors, group, strict=True)
            ]
            detected = time.perf_counter()
            for c, (video, frame, people) in enumerate(zip(videos, group, found, strict=True)):
                if people:
                    kps = people[0].keypoints.astype(np.float64)
                    down = video.info.width / frame.image.shape[1], video.info.height / frame.image.shape[0]
                    points2d[c] = kps[:, :2] * np.array(down) * np.array(video.scale)
                    conf[c] = kps[:, 2]
            begin_3d = time.perf_counter()
            triangulated = tri(points2d, conf)
            t_tri = time.perf_counter()
            result = bones(triangulated, tri)
            t_bones = time.perf_counter()
            smoothed = smoother.update(result.points, group[0].timestamp)
            t_smooth = time.perf_counter()
            analyse_pose_3d(smoothed)
            done = time.perf_counter()
            if index >= warmup:
                detect_s.append(detected - start)
                three_d_s.append(done - begin_3d)
                steps_s.append((t_tri - begin_3d, t_bones - t_tri, t_smooth - t_bones, done - t_smooth))
    finally:
        for detector in detectors:
            detector.close()
    return {
        "triangulation_vs_detection": round(sum(three_d_s) / sum(detect_s), 5),
        "goal_triangulation_vs_detection": GOAL,
        "detect_ms_per_group": round(1000 * statistics.median(detect_s), 2),
        "triangulate_analyse_ms_per_group": round(1000 * statistics.median(three_d_s), 3),
        "step_ms_per_group": {
            name: round(1000 * statistics.median(t[i] for t in steps_s), 3)
            for i, name in enumerate(("triangulate", "bone_prior", "smooth", "analyse"))
        },
        "groups": len(detect_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--max-width", type=int, default=720)
    args = parser.parse_args()
    if args.frames <= args.warmup:
        parser.error("--frames must exceed --warmup")
    videos, groups = load_groups(args.frames, args.max_width)
    result = {"benchmark": "triangulation", **measure_triangulation(videos, groups, args.warmup)}
    result["meets_goal"] = result["triangulation_vs_detection"] <= GOAL
    print(json.dumps(result))


if __name__ == "__main__":
    main()
