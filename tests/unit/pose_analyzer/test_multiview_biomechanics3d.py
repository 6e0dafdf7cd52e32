"""3D biomechanics: the 2D conventions on 3D points, rep counting from triangulated squats.

Two implementations compared: a body lying in a vertical plane seen straight on is the case
where the 2D functions (``biomechanics``, ``posture``) measure the truth, so the 3D ones must
agree with them there.  Both compute the same atan2/hypot expressions in float64 on values
near 1, so they agree within 1e-9 (degrees or ratio): far below any modelling difference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pose_analyzer.biomechanics import ANGLE_NAMES, body_measures, center_of_mass
from pose_analyzer.biomechanics.angles import joint_angles_array
from pose_analyzer.exercises import RepCounter, load_exercise
from pose_analyzer.multiview import CameraRig, read_rig
from pose_analyzer.multiview.biomechanics3d import (
    SEGMENT_NAMES,
    TrajectorySmoother3D,
    analyse_pose_3d,
    body_measures_3d,
    butterworth_filter,
    center_of_mass_3d,
    coefficient_of_variation,
    joint_angles_3d,
    posture_measures_3d,
    segment_lengths,
    velocities,
)
from pose_analyzer.multiview.triangulation import Triangulator
from pose_analyzer.posture import posture_measures
from tests.multiview_synthetic import STANDING, project_all, random_people, squatting_person

TOL = 1e-9


def _planar(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Image-like 2D keypoints (x right, y down, px) and the same body in 3D (x, 0, -y), z up."""
    xy = STANDING[:, [0, 2]] * np.array([400.0, -400.0]) + np.array([500.0, 900.0])
    xy = xy + rng.normal(0.0, 25.0, xy.shape)  # bend every joint a little
    return xy, np.stack([xy[:, 0], np.zeros(len(xy)), -xy[:, 1]], axis=1)


def test_planar_body_gives_the_2d_angles_measures_and_centre() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        xy, p3 = _planar(rng)
        np.testing.assert_allclose(joint_angles_3d(p3), joint_angles_array(xy), atol=TOL)
        ours, theirs = body_measures_3d(p3), body_measures(xy)
        assert ours.keys() == theirs.keys()
        np.testing.assert_allclose(list(ours.values()), list(theirs.values()), atol=TOL)
        ours, theirs = posture_measures_3d(p3), posture_measures(np.column_stack([xy, np.ones(21)]))
        assert ours.keys() == theirs.keys()
        np.testing.assert_allclose(list(ours.values()), list(theirs.values()), atol=TOL)
        com = center_of_mass_3d(p3)
        np.testing.assert_allclose(com[[0, 2]] * [1, -1], center_of_mass(xy), atol=TOL)


def test_angles_do_not_depend_on_where_the_body_is_or_which_way_up_the_rig_is() -> None:
    rng = np.random.default_rng(4)
    person = random_people(rng, 1)[0]
    ref = joint_angles_3d(person)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    moved = person @ q.T + rng.normal(size=3)
    np.testing.assert_allclose(joint_angles_3d(moved, up=q @ [0.0, 0.0, 1.0]), ref, atol=TOL)
    np.testing.assert_allclose(segment_lengths(moved), segment_lengths(person), atol=TOL)


def test_a_known_squat() -> None:
    result = analyse_pose_3d(squatting_person(90.0, yaw_deg=40.0))
    assert result.angles["left_knee"] == pytest.approx(90.0, abs=TOL)
    assert result.angles["right_knee"] == pytest.approx(90.0, abs=TOL)
    assert result.angles["trunk_lean"] == pytest.approx(0.5 * 0.4 * 90.0, abs=TOL)
    assert result.segments["left_thigh"] == pytest.approx(0.43, abs=TOL)
    assert set(result.angles) == set(ANGLE_NAMES)
    assert set(result.segments) == set(SEGMENT_NAMES)
    assert "knee_width_ratio" in result.measures
    assert "hips_below_shoulders" in result.measures
    assert "knee_symmetry" in result.measures
    unseen = squatting_person(90.0)
    unseen[13] = np.nan
    assert np.isnan(analyse_pose_3d(unseen).angles["left_knee"])
    assert np.isfinite(analyse_pose_3d(unseen).center_of_mass).all()


@pytest.fixture(scope="module")
def rig(test_data: Path) -> CameraRig:
    return read_rig(test_data / "multicam" / "Calib.qca.txt")


def _squat_series(reps: int, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Knee angle per frame: 1 s standing, then ``reps`` squats 175 -> 85 -> 175 of 1.6 s."""
    one = np.concatenate([np.linspace(175, 85, int(0.8 * fps)), np.linspace(85, 175, int(0.8 * fps))])
    knee = np.concatenate([np.full(int(fps), 175.0), *[one] * reps, np.full(int(fps), 175.0)])
    return knee, np.arange(knee.size) / fps


def test_reps_are_counted_from_triangulated_3d_angles(rig: CameraRig) -> None:
    """The squat YAML, unchanged, on 3D angles from 4 noisy cameras (2 px) at an oblique yaw.

    Angle error bound: the triangulation error (<= 22 mm, test_multiview_triangulation) over a
    0.43 m segment moves a direction by at most 0.022 / 0.43 rad = 2.9 deg per end; two
    segments meet at a joint, so <= 6 deg.  One camera's 2D projection misreads the same knee
    by tens of degrees (checked below), which is the point of 3D.
    """
    fps = 30.0
    knee, times = _squat_series(3, fps)
    tri = Triangulator(rig, rig.names)
    counter = RepCounter(load_exercise("squat"))
    rng = np.random.default_rng(8)
    worst_3d = worst_2d = 0.0
    for angle, t in zip(knee, times, strict=True):
        truth = squatting_person(float(angle), yaw_deg=35.0)
        uv = project_all(rig, truth)
        result = analyse_pose_3d(tri(uv + rng.normal(0.0, 2.0, uv.shape), np.ones((4, 21))).points)
        worst_3d = max(worst_3d, abs(result.angles["left_knee"] - angle))
        worst_2d = max(
            worst_2d, abs(float(joint_angles_array(uv[0])[ANGLE_NAMES.index("left_knee")]) - angle)
        )
        counter.update(float(t), result.angles, result.measures)
    assert worst_3d < 6.0
    assert worst_2d > 10.0
    assert counter.count == 3


def test_velocities_of_a_uniform_motion() -> None:
    t = np.linspace(0.0, 2.0, 61)
    velocity = np.array([0.3, -0.1, 0.05])
    path = STANDING[None] + t[:, None, None] * velocity
    np.testing.assert_allclose(velocities(path, t), np.broadcast_to(velocity, path.shape), atol=1e-12)
    np.testing.assert_allclose(
        velocities(center_of_mass_3d(path), t), np.broadcast_to(velocity, (61, 3)), atol=1e-12
    )
    with pytest.raises(ValueError, match="strictly increasing"):
        velocities(path[:3], np.array([0.0, 0.0, 1.0]))


def test_butterworth_keeps_movement_and_removes_jitter() -> None:
    fps = 60.0
    t = np.arange(240) / fps
    movement = 0.2 * np.sin(2 * np.pi * 1.0 * t)  # 1 Hz: a rep
    jitter = 0.01 * np.sin(2 * np.pi * 20.0 * t)  # 20 Hz: detector noise
    series = np.stack([movement + jitter] * 3, axis=1)[:, None, :]  # (T, 1, 3)
    series[100:103, 0, 1] = np.nan  # a gap on one coordinate
    out = butterworth_filter(series, fps)
    core = slice(30, 210)  # away from the ends, where any filter guesses
    # gain of a 4th-order 6 Hz Butterworth: 1.000 at 1 Hz, (6/20)^4 ~ 0.008 at 20 Hz
    assert np.abs(out[core, 0, 0] - movement[core]).max() < 0.002
    assert np.isnan(out[100:103, 0, 1]).all()
    assert np.isfinite(out[:100, 0, 1]).all()
    with pytest.raises(ValueError, match="half the frame rate"):
        butterworth_filter(series, fps, cutoff_hz=40.0)


def test_live_smoother_reduces_jitter_of_a_still_person() -> None:
    rng = np.random.default_rng(9)
    smoother = TrajectorySmoother3D()
    raw, smooth = [], []
    for i in range(90):
        noisy = STANDING + rng.normal(0.0, 0.005, STANDING.shape)
        raw.append(noisy)
        smooth.append(smoother.update(noisy, i / 30.0))
    raw_jitter = np.abs(np.diff(np.array(raw)[30:], axis=0)).mean()
    smooth_jitter = np.abs(np.diff(np.array(smooth)[30:], axis=0)).mean()
    assert smooth_jitter < 0.5 * raw_jitter
    smoother.update(STANDING, 0.5)  # a restarted stream starts over instead of failing


def test_coefficient_of_variation_of_bone_lengths() -> None:
    lengths = np.array([[0.40, 1.0], [0.44, 1.0], [np.nan, 1.0]])
    np.testing.assert_allclose(coefficient_of_variation(lengths), [0.02 / 0.42, 0.0], atol=1e-12)


def test_the_per_pose_analysis_matches_the_vectorised_functions() -> None:
    """analyse_pose_3d computes in plain floats; the array functions are the reference.

    Same formulas in float64 on values near 1 (metres, degrees up to 180): 1e-9 leaves room for
    summation order only.  Unseen keypoints (NaN), one side of a pair or both, must give the
    same NaN pattern and the same one-sided midpoints.
    """
    rng = np.random.default_rng(11)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    for i, person in enumerate(random_people(rng, 30)):
        points = person.copy()
        if i % 3:
            points[rng.choice(21, size=i % 7, replace=False)] = np.nan
        up = (0.0, 0.0, 1.0) if i % 2 else tuple(q @ [0.0, 0.0, 1.0])
        result = analyse_pose_3d(points, up)
        np.testing.assert_allclose(list(result.angles.values()), joint_angles_3d(points, up), atol=TOL)
        np.testing.assert_allclose(list(result.segments.values()), segment_lengths(points), atol=TOL)
        np.testing.assert_allclose(result.center_of_mass, center_of_mass_3d(points), atol=TOL)
    everything_unseen = analyse_pose_3d(np.full((21, 3), np.nan))
    assert np.isnan(everything_unseen.center_of_mass).all()
    assert np.isnan(list(everything_unseen.angles.values())).all()
