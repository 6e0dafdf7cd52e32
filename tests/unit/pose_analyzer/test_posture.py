"""Posture measures on keypoints placed at exact positions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pose_analyzer.biomechanics.angles import joint_angles
from pose_analyzer.exercises import RepCounter, load_exercise
from pose_analyzer.keypoints import Keypoint as K
from pose_analyzer.keypoints import empty_keypoints
from pose_analyzer.posture import POSTURE_NAMES, posture_columns, posture_measures

# Float32 keypoints of a few hundred pixels carry about 3e-5 relative error; the ratios
# and angles below are a few operations deep.
TOL = 1e-4


def person(shoulder: tuple[float, float], hip: tuple[float, float]) -> np.ndarray:
    kps = empty_keypoints()
    for k in (K.LEFT_SHOULDER, K.RIGHT_SHOULDER):
        kps[k] = (*shoulder, 0.9)
    for k in (K.LEFT_HIP, K.RIGHT_HIP):
        kps[k] = (*hip, 0.9)
    return kps


@pytest.mark.parametrize(
    ("shoulder", "hip", "incline", "below"),
    [
        ((200.0, 100.0), (200.0, 300.0), 90.0, 1.0),  # standing
        ((100.0, 300.0), (300.0, 300.0), 0.0, 0.0),  # plank, level
        (
            (100.0, 250.0),
            (300.0, 250.0 + 200.0 * math.tan(math.radians(20))),
            20.0,
            math.sin(math.radians(20)),
        ),
        ((200.0, 300.0), (200.0, 100.0), 90.0, -1.0),  # upside down (handstand)
    ],
)
def test_trunk_incline_and_hips_below_shoulders(
    shoulder: tuple[float, float], hip: tuple[float, float], incline: float, below: float
) -> None:
    m = posture_measures(person(shoulder, hip))
    assert m["trunk_incline"] == pytest.approx(incline, abs=1e-3)
    assert m["hips_below_shoulders"] == pytest.approx(below, abs=TOL)
    # The same line as trunk_lean, read from the horizontal.
    lean = joint_angles(person(shoulder, hip))["trunk_lean"]
    assert m["trunk_incline"] == pytest.approx(abs(90.0 - lean), abs=1e-3)


def test_wrist_reach_is_one_for_a_straight_arm_and_less_when_bent() -> None:
    kps = person((200.0, 100.0), (200.0, 300.0))
    kps[K.LEFT_ELBOW] = (260.0, 100.0, 0.9)
    kps[K.LEFT_WRIST] = (320.0, 100.0, 0.9)  # straight, horizontal
    kps[K.RIGHT_ELBOW] = (200.0, 160.0, 0.9)
    kps[K.RIGHT_WRIST] = (260.0, 160.0, 0.9)  # elbow at 90 deg, equal segments
    m = posture_measures(kps)
    assert m["left_wrist_reach"] == pytest.approx(1.0, abs=TOL)
    assert m["right_wrist_reach"] == pytest.approx(math.sqrt(2) / 2, abs=TOL)


def test_unseen_keypoints_give_nan() -> None:
    m = posture_measures(empty_keypoints())
    assert all(math.isnan(v) for v in m.values())
    kps = person((200.0, 100.0), (200.0, 300.0))
    kps[K.LEFT_HIP, 2] = kps[K.RIGHT_HIP, 2] = 0.2
    assert math.isnan(posture_measures(kps, min_confidence=0.3)["trunk_incline"])
    assert posture_measures(kps)["trunk_incline"] == pytest.approx(90.0, abs=1e-3)


def test_body_line_is_180_in_a_straight_plank_and_smaller_when_the_hips_sag() -> None:
    kps = person((100.0, 300.0), (300.0, 300.0))
    for k in (K.LEFT_ANKLE, K.RIGHT_ANKLE):
        kps[k] = (500.0, 300.0, 0.9)
    assert posture_measures(kps)["body_line"] == pytest.approx(180.0, abs=1e-3)
    # Hips 200 px * tan(10 deg) below the line on both halves: the line bends by 20 deg.
    sag = 200.0 * math.tan(math.radians(10))
    for k in (K.LEFT_HIP, K.RIGHT_HIP):
        kps[k] = (300.0, 300.0 + sag, 0.9)
    assert posture_measures(kps)["body_line"] == pytest.approx(160.0, abs=1e-3)


@pytest.mark.parametrize(
    ("exercise", "names"),
    [("squat", {"hips_below_shoulders"}), ("push_up", {"body_line"}), ("lunge", set())],
)
def test_the_engine_measures_only_what_the_counter_reads(exercise: str, names: set[str]) -> None:
    """The engine asks ``posture_columns`` for the counter's ``posture_names``: the same values as
    all measures, each one that is read, and nothing else (hidden points masked as before)."""
    counter = RepCounter(load_exercise(exercise))
    assert counter.posture_names == names
    assert counter.needs_posture == bool(names)
    kps = person((200.0, 100.0), (230.0, 300.0))
    for k, xy in (
        (K.LEFT_ANKLE, (260.0, 480.0)),
        (K.LEFT_ELBOW, (260.0, 120.0)),
        (K.LEFT_WRIST, (320.0, 90.0)),
    ):
        kps[k] = (*xy, 0.9)
    kps[K.RIGHT_ANKLE, 2] = 0.0  # unseen: masked
    x, y, confidence = kps.T.tolist()
    full = posture_columns(x, y, confidence)
    assert full.keys() == set(POSTURE_NAMES)
    assert full == posture_measures(kps)
    for subset in (names, {"left_wrist_reach"}, set(POSTURE_NAMES)):
        some = posture_columns(x, y, confidence, names=frozenset(subset))
        assert some.keys() >= subset
        assert all(some[n] == full[n] or math.isnan(full[n]) for n in some)
