"""Real frames: YOLO on the four synchronised cameras of the shared clip, people associated and
triangulated by ``MultiPersonTriangulator``.

Two people: the athlete in the middle of the rig, seen by the four cameras, and an operator
standing about 3 m behind him, seen by cam01 and cam02 only (MediaPipe, single person, never
reports her).  Every moment must give both, each always under the same id, the athlete
near the rig's capture centre (on some frames his cam01+cam02 and cam03+cam04 pairs disagree by
more than the threshold, and the two groups are joined again), and each reprojecting as a
good triangulation does on this rig (the MediaPipe session's mean is 7 px; Pose2Sim refuses a
triangulation above 15 px by default).  Every 7th of the first 57 frames at 640 px wide:
36 detections, about 2 s of YOLO through ONNX on a quiet 2-core machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pose_analyzer.detection.yolo import YoloDetector
from pose_analyzer.multiview import read_rig
from pose_analyzer.multiview.offline import match_videos
from pose_analyzer.multiview.people3d import MultiPersonTriangulator, body_centre
from pose_analyzer.video_io import iter_frames
from tests.multiview_synthetic import CAPTURE_CENTRE

EVERY = 7
GROUPS = 9  # frames 0-56; on frame 56 the association alone splits the athlete in two
CENTRE = CAPTURE_CENTRE[:2]


@pytest.fixture(scope="module")
def detector(yolo_detector: YoloDetector) -> YoloDetector:
    return yolo_detector


def test_yolo_gives_one_3d_person_with_one_id(detector: YoloDetector, test_data: Path) -> None:
    multicam = test_data / "multicam"
    rig = read_rig(multicam / "Calib.qca.txt")
    videos = match_videos([multicam / "videos" / f"cam0{i}.mp4" for i in range(1, 5)], rig)
    triangulate = MultiPersonTriangulator(rig)
    streams = [iter_frames(v.info, 640, every=EVERY) for v in videos]
    ids: dict[str, set[int]] = {"athlete": set(), "operator": set()}
    errors: list[float] = []
    athlete_cameras: list[int] = []
    for n, frames in enumerate(zip(*streams, strict=False)):
        if n == GROUPS:
            break
        views = {}
        for video, detections in zip(videos, detector.detect(list(frames)), strict=True):
            down = video.info.width / frames[0].image.shape[1]
            people = np.array([p.keypoints for p in detections.people], dtype=np.float64).reshape(-1, 21, 3)
            people[..., 0] *= down * video.scale[0]
            people[..., 1] *= down * video.scale[1]
            views[video.camera.name] = people
        found = triangulate(views, n * EVERY / video.info.fps)
        assert len(found) == 2, [len(v) for v in views.values()]
        athlete, operator = sorted(found, key=lambda p: np.linalg.norm(body_centre(p.points)[:2] - CENTRE))
        assert np.linalg.norm(body_centre(athlete.points)[:2] - CENTRE) < 0.8
        assert len(athlete.cameras) >= 2
        athlete_cameras.append(len(athlete.cameras))
        assert operator.cameras == ("cam01", "cam02")
        assert np.linalg.norm(body_centre(operator.points) - body_centre(athlete.points)) > 2.0
        ids["athlete"].add(athlete.id)
        ids["operator"].add(operator.id)
        errors.extend(float(np.nanmean(p.triangulation.reprojection_px)) for p in found)
    assert n == GROUPS
    assert ids == {"athlete": {0}, "operator": {1}}
    assert np.mean(athlete_cameras) >= 3.0  # 3.6 on the whole clip
    assert float(np.mean(errors)) <= 15.0, errors
