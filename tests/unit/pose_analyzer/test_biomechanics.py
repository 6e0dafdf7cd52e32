"""Joint angles, kinematics, symmetry and centre of mass on known geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pose_analyzer.biomechanics import (
    ANGLE_NAMES,
    angular_acceleration,
    angular_velocity,
    body_measures,
    center_of_mass,
    interior_angle,
    joint_angles,
    range_of_motion,
    symmetry_index,
    symmetry_indices,
)
from pose_analyzer.keypoints import Keypoint as K
from pose_analyzer.keypoints import empty_keypoints


def standing_person() -> np.ndarray:
    """A front-view person standing upright, arms hanging, feet under the hips (pixels, y down)."""
    k = empty_keypoints()
    points = {
        K.NOSE: (100, 20), K.LEFT_EYE: (105, 15), K.RIGHT_EYE: (95, 15),
        K.LEFT_EAR: (112, 20), K.RIGHT_EAR: (88, 20),
        K.LEFT_SHOULDER: (130, 60), K.RIGHT_SHOULDER: (70, 60),
        K.LEFT_ELBOW: (135, 120), K.RIGHT_ELBOW: (65, 120),
        K.LEFT_WRIST: (137, 170), K.RIGHT_WRIST: (63, 170),
        K.LEFT_HIP: (120, 180), K.RIGHT_HIP: (80, 180),
        K.LEFT_KNEE: (120, 260), K.RIGHT_KNEE: (80, 260),
        K.LEFT_ANKLE: (120, 340), K.RIGHT_ANKLE: (80, 340),
        K.LEFT_HEEL: (118, 350), K.RIGHT_HEEL: (82, 350),
        K.LEFT_FOOT_INDEX: (130, 355), K.RIGHT_FOOT_INDEX: (70, 355),
    }  # fmt: skip
    for kp, (x, y) in points.items():
        k[kp] = (x, y, 1.0)
    return k


@pytest.mark.parametrize(
    ("a", "c", "expected"),
    [
        ((1, 0), (0, 1), 90.0),
        ((1, 0), (-1, 0), 180.0),
        ((1, 0), (1, 0), 0.0),
        ((1, 0), (1, 1), 45.0),
        ((0, -2), (3, 3), 135.0),
    ],
)
def test_interior_angle_on_known_geometry(
    a: tuple[float, float], c: tuple[float, float], expected: float
) -> None:
    assert interior_angle(np.array(a), np.zeros(2), np.array(c)) == pytest.approx(expected, abs=1e-9)


def test_interior_angle_is_unsigned_so_mirrored_poses_agree() -> None:
    a, b = np.array([0.0, -1.0]), np.zeros(2)
    assert interior_angle(a, b, np.array([1.0, 0.2])) == pytest.approx(
        interior_angle(a, b, np.array([-1.0, 0.2]))
    )


def test_interior_angle_propagates_nan_and_degenerate_segments() -> None:
    assert math.isnan(interior_angle(np.array([np.nan, 0]), np.zeros(2), np.array([0, 1])))
    assert math.isnan(interior_angle(np.zeros(2), np.zeros(2), np.array([0, 1])))


def test_interior_angle_is_vectorised() -> None:
    a = np.array([[1.0, 0.0], [1.0, 0.0], [np.nan, 0.0]])
    c = np.array([[0.0, 1.0], [-1.0, 0.0], [0.0, 1.0]])
    out = interior_angle(a, np.zeros((3, 2)), c)
    np.testing.assert_allclose(out[:2], [90.0, 180.0])
    assert math.isnan(out[2])


def test_standing_person_has_straight_limbs_and_upright_trunk() -> None:
    angles = joint_angles(standing_person())
    assert set(angles) == set(ANGLE_NAMES)
    assert angles["left_knee"] == pytest.approx(180.0)
    assert angles["right_knee"] == pytest.approx(180.0)
    assert angles["left_hip"] > 170
    assert angles["right_hip"] > 170
    assert angles["left_elbow"] > 170
    assert angles["right_elbow"] > 170
    assert angles["left_shoulder"] < 20
    assert angles["trunk_lean"] == pytest.approx(0.0, abs=0.5)
    assert np.isfinite(angles["left_ankle"])


def test_ankle_angle_of_a_flat_foot_seen_from_the_side_is_90() -> None:
    k = standing_person()
    k[K.LEFT_FOOT_INDEX, :2] = k[K.LEFT_ANKLE, :2] + np.array([25.0, 0.0])
    assert joint_angles(k)["left_ankle"] == pytest.approx(90.0)


def test_trunk_lean_of_a_horizontal_body_is_90() -> None:
    k = standing_person()
    k[:, :2] = k[:, :2] @ np.array([[0.0, 1.0], [-1.0, 0.0]])  # rotate the whole body 90 degrees
    assert joint_angles(k)["trunk_lean"] == pytest.approx(90.0, abs=0.5)


def test_missing_foot_points_make_ankle_nan_only() -> None:
    k = standing_person()
    k[[K.LEFT_FOOT_INDEX, K.RIGHT_FOOT_INDEX]] = (np.nan, np.nan, 0.0)
    angles = joint_angles(k)
    assert math.isnan(angles["left_ankle"])
    assert math.isnan(angles["right_ankle"])
    assert not math.isnan(angles["left_knee"])


def test_batched_angles_match_single_frames() -> None:
    from pose_analyzer.biomechanics.angles import joint_angles_array

    frames = np.stack([standing_person(), standing_person() * np.array([1.0, 0.9, 1.0], dtype=np.float32)])
    batch = joint_angles_array(frames)
    assert batch.shape == (2, len(ANGLE_NAMES))
    np.testing.assert_allclose(batch[0], list(joint_angles(frames[0]).values()))


def test_angular_velocity_and_acceleration_of_a_known_motion() -> None:
    t = np.linspace(0.0, 2.0, 201)
    angles = 90.0 + 30.0 * t**2  # velocity 60 t, acceleration 60
    np.testing.assert_allclose(angular_velocity(angles, t)[5:-5], 60.0 * t[5:-5], rtol=1e-6)
    np.testing.assert_allclose(angular_acceleration(angles, t)[5:-5], 60.0, rtol=1e-3)


def test_angular_velocity_rejects_bad_timestamps() -> None:
    with pytest.raises(ValueError, match="increasing"):
        angular_velocity(np.zeros(3), np.array([0.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="first axis"):
        angular_velocity(np.zeros(3), np.zeros(4))


def test_range_of_motion_ignores_nan() -> None:
    assert range_of_motion(np.array([170.0, np.nan, 80.0, 120.0])) == pytest.approx(90.0)
    assert math.isnan(range_of_motion(np.array([np.nan, np.nan])))
    np.testing.assert_allclose(range_of_motion(np.array([[0.0, 10.0], [5.0, 40.0]])), [5.0, 30.0])


def test_symmetry_index() -> None:
    assert symmetry_index(100.0, 100.0) == 0.0
    assert symmetry_index(90.0, 110.0) == pytest.approx(20.0)
    assert symmetry_index(110.0, 90.0) == pytest.approx(20.0)
    assert math.isnan(symmetry_index(np.nan, 100.0))
    indices = symmetry_indices({"left_knee": 90.0, "right_knee": 110.0})
    assert indices["knee_symmetry"] == pytest.approx(20.0)
    assert math.isnan(indices["elbow_symmetry"])


def test_center_of_mass_lies_inside_the_body_near_the_hips() -> None:
    k = standing_person()
    x, y = center_of_mass(k)
    xs, ys = k[:, 0], k[:, 1]
    assert xs.min() < x < xs.max()
    assert ys.min() < y < ys.max()
    # Upright humans have their centre of mass a little above the hips (about 55 % of height from the feet).
    assert x == pytest.approx(100.0, abs=1.0)
    assert 120 < y < 200


def test_center_of_mass_uses_what_is_seen_and_is_nan_for_nobody() -> None:
    k = standing_person()
    k[[K.LEFT_WRIST, K.LEFT_ELBOW], :2] = np.nan
    assert np.isfinite(center_of_mass(k)).all()
    assert np.isnan(center_of_mass(empty_keypoints())).all()


def test_body_measures_of_a_standing_person() -> None:
    m = body_measures(standing_person())
    assert m["knee_width_ratio"] == pytest.approx(1.0)
    assert m["stance_width_ratio"] == pytest.approx(40 / 60)
    assert m["left_ankle_height"] == pytest.approx(-1.0)
    assert m["hip_height"] == pytest.approx(1.0)
