"""PoseEngine: the per-stream pipeline, driven by a detector that replays known poses."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from pose_analyzer.biomechanics.angles import ANGLE_NAMES
from pose_analyzer.detection.base import Detector
from pose_analyzer.engine import PoseEngine, detect_and_analyse
from pose_analyzer.keypoints import Keypoint as K
from pose_analyzer.keypoints import empty_keypoints
from pose_analyzer.smoothing import SmoothingConfig
from pose_analyzer.tracking import IoUTracker
from pose_analyzer.types import Detections, Frame, FrameAnalysis, Person

FPS = 30.0
IMAGE = np.zeros((480, 640, 3), dtype=np.uint8)


def squatter(knee_deg: float, x0: float = 200.0) -> Person:
    """A side-view person whose knees bend to ``knee_deg`` (thigh horizontal-ish, shin vertical)."""
    k = empty_keypoints()
    ankle = np.array([x0, 400.0])
    knee = ankle + np.array([0.0, -90.0])
    theta = math.radians(180.0 - knee_deg)  # thigh direction rotates forward from vertical
    hip = knee + 90.0 * np.array([-math.sin(theta), -math.cos(theta)])
    shoulder = hip + np.array([10.0, -120.0])
    for side in ("LEFT", "RIGHT"):
        k[K[f"{side}_ANKLE"]] = (*ankle, 0.95)
        k[K[f"{side}_KNEE"]] = (*knee, 0.95)
        k[K[f"{side}_HIP"]] = (*hip, 0.95)
        k[K[f"{side}_SHOULDER"]] = (*shoulder, 0.95)
        k[K[f"{side}_ELBOW"]] = (*(shoulder + np.array([20.0, 60.0])), 0.9)
        k[K[f"{side}_WRIST"]] = (*(shoulder + np.array([40.0, 110.0])), 0.9)
        k[K[f"{side}_EAR"]] = (*(shoulder + np.array([5.0, -40.0])), 0.9)
        k[K[f"{side}_FOOT_INDEX"]] = (*(ankle + np.array([30.0, 5.0])), 0.9)
    k[K.NOSE] = (*(shoulder + np.array([20.0, -45.0])), 0.9)
    xy = k[:, :2][np.isfinite(k[:, 0])]
    box = (*xy.min(axis=0).tolist(), *xy.max(axis=0).tolist())
    return Person(keypoints=k, box=box, score=0.9)  # type: ignore[arg-type]


class ReplayDetector:
    """A Detector that returns prepared Detections frame by frame."""

    name = "replay"

    def __init__(self, script: list[list[Person]]) -> None:
        self.script = script
        self.calls = 0

    def setup(self) -> None:
        return None

    def detect(self, frames: list[Frame]) -> list[Detections]:
        out = [Detections(people=self.script[f.index]) for f in frames]
        self.calls += len(frames)
        return out

    def close(self) -> None:
        return None


class DetectingEngine(PoseEngine):
    """The engine fed by a detector the test owns (the engine itself owns none)."""

    def __init__(self, detector: Detector, **options: Any) -> None:
        super().__init__(**options)
        self.detector = detector

    def process(self, frame: Frame) -> FrameAnalysis:
        return detect_and_analyse(self.detector, self, frame)


def knee_series(reps: int, period_s: float = 2.0) -> np.ndarray:
    t = np.arange(int(reps * period_s * FPS)) / FPS
    return 130.0 + 45.0 * np.cos(2 * np.pi * t / period_s)  # 175 -> 85 -> 175


def run(engine: DetectingEngine, n: int) -> list[float]:
    return [engine.process(Frame(IMAGE, i / FPS, i)).people[0].angles["left_knee"] for i in range(n)]


def test_engine_counts_reps_and_reports_every_stage() -> None:
    series = knee_series(3)
    script = [[squatter(a)] for a in series]
    engine = DetectingEngine(ReplayDetector(script), exercise="squat")
    analysis = None
    for i in range(len(script)):
        analysis = engine.process(Frame(IMAGE, i / FPS, i))
    assert analysis is not None
    assert engine.rep_count() == 3
    assert [r.index for r in engine.reps()] == [1, 2, 3]
    assert set(analysis.timings_ms) == {"detect", "cuts", "track", "smooth", "biomechanics", "reps"}
    person = analysis.people[0]
    assert person.rep_count == 3
    assert person.last_rep is engine.reps()[-1]
    assert set(person.angles) == set(ANGLE_NAMES)
    assert person.angles["left_knee"] == pytest.approx(series[-1], abs=1.5)
    assert person.center_of_mass is not None
    assert "knee_symmetry" in person.measures
    assert "knee_width_ratio" in person.measures
    assert set(person.angular_velocity) == set(ANGLE_NAMES)
    assert (analysis.width, analysis.height) == (640, 480)


def test_each_rep_is_reported_once_on_the_frame_that_completed_it() -> None:
    series = knee_series(3)
    script = [[squatter(a)] for a in series]
    engine = DetectingEngine(ReplayDetector(script), exercise="squat")
    new = [engine.process(Frame(IMAGE, i / FPS, i)).people[0].new_rep for i in range(len(script))]
    reported = [rep for rep in new if rep is not None]
    assert reported == engine.reps()
    assert [r.index for r in reported] == [1, 2, 3]


def test_angular_velocity_follows_the_motion() -> None:
    series = knee_series(1)
    script = [[squatter(a)] for a in series]
    engine = DetectingEngine(ReplayDetector(script), smoothing=SmoothingConfig(enabled=False))
    velocities = [
        engine.process(Frame(IMAGE, i / FPS, i)).people[0].angular_velocity for i in range(len(series))
    ]
    expected = np.diff(series) * FPS
    got = np.array([v["left_knee"] for v in velocities[1:]])
    np.testing.assert_allclose(got, expected, atol=1.0)


def test_analyse_takes_detections_made_elsewhere() -> None:
    engine = DetectingEngine(ReplayDetector([]), exercise="squat")
    analysis = engine.analyse(Frame(IMAGE, 0.0, 0), Detections(people=[squatter(170.0)]))
    assert "detect" not in analysis.timings_ms
    assert analysis.people[0].person.track_id == 0
    assert analysis.people[0].phase == "rest"


def test_tracks_count_separately_and_default_to_the_busiest() -> None:
    series = knee_series(2)
    script = [[squatter(a, x0=150.0), squatter(175.0, x0=450.0)] for a in series]
    engine = DetectingEngine(ReplayDetector(script), tracker=IoUTracker(), exercise="squat")
    for i in range(len(series)):
        engine.process(Frame(IMAGE, i / FPS, i))
    ids = engine.track_ids()
    assert len(ids) == 2
    counts = {tid: engine.rep_count(tid) for tid in ids}
    assert sorted(counts.values()) == [0, 2]
    assert engine.rep_count() == 2
    idle = next(t for t, c in counts.items() if c == 0)
    focused = DetectingEngine(
        ReplayDetector(script), tracker=IoUTracker(), exercise="squat", person_of_interest=idle
    )
    for i in range(len(series)):
        focused.process(Frame(IMAGE, i / FPS, i))
    assert focused.rep_count() == 0
    assert focused.reps(999) == []


def test_without_exercise_there_are_angles_but_no_reps() -> None:
    script = [[squatter(a)] for a in knee_series(1)]
    engine = DetectingEngine(ReplayDetector(script))
    angles = run(engine, len(script))
    assert min(angles) < 100
    assert engine.rep_count() == 0
    assert engine.reps() == []


def test_unknown_exercise_name_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"unknown exercise 'plank'.*available"):
        DetectingEngine(ReplayDetector([]), exercise="plank")


def test_empty_frames_are_fine() -> None:
    engine = DetectingEngine(ReplayDetector([[], []]), exercise="squat")
    assert engine.process(Frame(IMAGE, 0.0, 0)).people == []
    assert engine.rep_count() == 0
