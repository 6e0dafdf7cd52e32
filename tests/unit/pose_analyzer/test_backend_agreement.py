"""MediaPipe and YOLO11n-pose on the shared push-up, squat and curl clips: the same reps,
scored within 10 points of each other, through the whole engine as the service runs it
(each backend's tracker and angle tolerance from the registry).

Every second frame at most 640 pixels wide, as test_rep_counts.py; each clip is decoded
and detected once per backend (module fixture): about 3 minutes of CPU for both.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from pose_analyzer.detection.registry import angle_tolerance, create_detector, create_tracker
from pose_analyzer.engine import PoseEngine, detect_and_analyse
from pose_analyzer.types import Frame, RepRecord

pytestmark = pytest.mark.slow

FRAME_STEP = 2
MAX_WIDTH = 640
MAX_SCORE_GAP = 10.0
# Two backends' reps are the same rep when their starts lie this close (a rep lasts 1-3 s).
SAME_REP_S = 1.0
# (clip, exercise, truth, reps both backends see).  The curl clip has 3 full curls, but
# the third one's lowering happens in its last 0.3 s with the forearm below the frame:
# YOLO puts the wrist on the bottom edge (confidence 0.46 -> 0.21) and cannot see the arm
# straighten; MediaPipe's third rep rests on a wrist it places outside the image.  Both
# must count the two curls they both see (docs/validation.md).
CLIPS = (
    ("pushup_4reps.mp4", "push_up", 4, 4),
    ("squat_8reps.mp4", "squat", 8, 8),
    ("curl_3reps_starts_midrep.mp4", "biceps_curl", 3, 2),
)
BACKENDS = ("mediapipe", "yolo")


def _reps(path: Path, backend: str, exercise: str) -> list[RepRecord]:
    detector = create_detector(backend)
    detector.setup()
    engine = PoseEngine(
        tracker=create_tracker(backend), exercise=exercise, angle_tolerance_deg=angle_tolerance(backend)
    )
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS)
    index = 0
    try:
        while capture.grab():
            if index % FRAME_STEP == 0:
                _, image = capture.retrieve()
                h, w = image.shape[:2]
                if w > MAX_WIDTH:
                    size = (MAX_WIDTH, round(h * MAX_WIDTH / w))
                    image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
                detect_and_analyse(detector, engine, Frame(image=image, timestamp=index / fps, index=index))
            index += 1
    finally:
        capture.release()
        detector.close()
    return engine.reps()


@pytest.fixture(scope="module")
def reps(test_data: Path) -> dict[tuple[str, str], list[RepRecord]]:
    return {
        (clip, backend): _reps(test_data / "videos" / clip, backend, exercise)
        for clip, exercise, _, _ in CLIPS
        for backend in BACKENDS
    }


@pytest.mark.parametrize(("clip", "truth", "both"), [(c, t, n) for c, _, t, n in CLIPS])
def test_both_backends_count_the_reps_they_both_see(
    reps: dict[tuple[str, str], list[RepRecord]], clip: str, truth: int, both: int
) -> None:
    mediapipe, yolo = reps[(clip, "mediapipe")], reps[(clip, "yolo")]
    assert len(mediapipe) == truth
    assert both <= len(yolo) <= truth
    pairs = [(m, y) for m in mediapipe for y in yolo if abs(m.start_time - y.start_time) <= SAME_REP_S]
    assert len({id(m) for m, _ in pairs}) == len({id(y) for _, y in pairs}) == len(pairs) == len(yolo)


@pytest.mark.parametrize("clip", [c for c, _, _, _ in CLIPS])
def test_per_rep_scores_agree_within_10_points(
    reps: dict[tuple[str, str], list[RepRecord]], clip: str
) -> None:
    mediapipe, yolo = reps[(clip, "mediapipe")], reps[(clip, "yolo")]
    pairs = [(m, y) for m in mediapipe for y in yolo if abs(m.start_time - y.start_time) <= SAME_REP_S]
    assert pairs
    for m, y in pairs:
        assert 0 <= m.score <= 100
        assert 0 <= y.score <= 100
        assert abs(m.score - y.score) <= MAX_SCORE_GAP, (m.start_time, m.score, y.score, m.faults, y.faults)
        assert {f.code for f in m.faults} == {f.code for f in y.faults}
