"""BoneLengthPrior against synthetic squats projected through the shared demo rig.

Bounds, derived:
- the noise estimate: with 2 px noise and every keypoint seen by all four cameras, 30 groups
  pool 30 x 21 x (2*4 - 3) = 3150 degrees of freedom; the relative standard deviation of the
  estimated sigma is about 1 / sqrt(2 * 3150) = 1.3 %, so 10 % is over seven of them;
- a learnt length: one group's measure has the standard deviation s of the distance between
  two independently triangulated points (their first-order covariances along the segment);
  the median of n = 30 has about 1.25 s / sqrt(n), and the test allows six of those;
- the refinement of a joint misplaced by two cameras: to first order the refined length
  error is k times the triangulated one, k = sL^2 / (sL^2 + d' S d) with sL the prior's
  spread, S the joint's covariance from those two cameras and d the segment's direction;
  the test allows 10 % of the error for the linearisation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pose_analyzer.keypoints import Keypoint as K
from pose_analyzer.multiview import CameraRig, read_rig
from pose_analyzer.multiview.bones import CHAINS, DEFAULT_LENGTH_SIGMA, BoneLengthPrior
from pose_analyzer.multiview.triangulation import Triangulation, Triangulator
from tests.multiview_synthetic import first_order_covariance, project_all, squatting_person

SIGMA_PX = 2.0
GROUPS = 30
# squatting_person's segments, in CHAINS order: upper arms, thighs, forearms, shanks.
TRUE_LENGTHS = np.array([0.29, 0.29, 0.43, 0.43, 0.26, 0.26, 0.43, 0.43])
SEGMENTS = [pair for stage in CHAINS for pair in stage]


@pytest.fixture(scope="module")
def rig(test_data: Path) -> CameraRig:
    return read_rig(test_data / "multicam/Calib.qca.txt")


def _squats(n: int) -> list[np.ndarray]:
    return [squatting_person(180.0 - 3.0 * i, yaw_deg=7.0 * i) for i in range(n)]


def _learnt(rig: CameraRig, noise_px: float, seed: int = 3) -> tuple[BoneLengthPrior, Triangulator]:
    rng = np.random.default_rng(seed)
    tri = Triangulator(rig, rig.names)
    prior = BoneLengthPrior()
    for person in _squats(GROUPS):
        pixels = (
            project_all(rig, person) + rng.normal(0.0, noise_px, (4, 21, 2))
            if noise_px
            else project_all(rig, person)
        )
        prior(tri(pixels, np.ones((4, 21))), tri)
    return prior, tri


def test_exact_views_teach_the_exact_lengths_and_stay_as_they_are(rig: CameraRig) -> None:
    prior, tri = _learnt(rig, 0.0)
    assert np.abs(prior.lengths() - TRUE_LENGTHS).max() < 1e-6
    person = squatting_person(100.0, yaw_deg=40.0)
    refined = prior(tri(project_all(rig, person), np.ones((4, 21))), tri)
    assert np.abs(refined.points - person).max() < 1e-6  # nothing to pull: lengths and views agree
    assert refined.reprojection_px.max() < 1e-4


def test_noise_and_lengths_are_learnt_within_their_derived_bounds(rig: CameraRig) -> None:
    prior, _ = _learnt(rig, SIGMA_PX)
    assert prior.sigma_px == pytest.approx(SIGMA_PX, rel=0.10)
    person = squatting_person(120.0)
    for (parent, child), learnt, true in zip(SEGMENTS, prior.lengths(), TRUE_LENGTHS, strict=True):
        d = person[child] - person[parent]
        d /= np.linalg.norm(d)
        cams = list(range(4))
        cov = first_order_covariance(rig, person[parent], SIGMA_PX, cams)
        cov += first_order_covariance(rig, person[child], SIGMA_PX, cams)
        s = float(np.sqrt(d @ cov @ d))
        assert abs(learnt - true) <= 6 * 1.25 * s / np.sqrt(GROUPS), (parent.name, child.name, learnt)


def test_a_wrist_two_cameras_misplace_is_pulled_to_its_forearm_length(rig: CameraRig) -> None:
    prior, tri = _learnt(rig, SIGMA_PX)
    person = squatting_person(120.0, yaw_deg=30.0)
    wrist, elbow = person[K.LEFT_WRIST], person[K.LEFT_ELBOW]
    # Cameras 0 and 1 agree on a wrist 8 cm off along the direction they pin down least;
    # cameras 2 and 3 do not see it.
    cov = first_order_covariance(rig, wrist, prior.sigma_px, [0, 1])
    weak = np.linalg.eigh(cov)[1][:, -1]
    moved = person.copy()
    moved[K.LEFT_WRIST] = wrist + 0.08 * weak
    pixels = project_all(rig, person)
    pixels[:2, K.LEFT_WRIST] = project_all(rig, moved)[:2, K.LEFT_WRIST]
    confidence = np.ones((4, 21))
    confidence[2:, K.LEFT_WRIST] = 0.0
    plain = tri(pixels, confidence)
    refined = prior(plain, tri)

    length = prior.lengths()[SEGMENTS.index((K.LEFT_ELBOW, K.LEFT_WRIST))]
    before = np.linalg.norm(plain.points[K.LEFT_WRIST] - plain.points[K.LEFT_ELBOW]) - length
    after = np.linalg.norm(refined.points[K.LEFT_WRIST] - refined.points[K.LEFT_ELBOW]) - length
    d = (plain.points[K.LEFT_WRIST] - elbow) / np.linalg.norm(plain.points[K.LEFT_WRIST] - elbow)
    spread = DEFAULT_LENGTH_SIGMA * length
    k = spread**2 / (spread**2 + d @ cov @ d)
    assert before > 0.05  # the triangulation alone: a forearm 5+ cm too long
    assert abs(after - k * before) <= 0.1 * abs(before)
    assert abs(after) < abs(before)
    # The error is re-measured on the refined point: no longer the two cameras' perfect agreement.
    assert plain.reprojection_px[K.LEFT_WRIST] < 1e-6
    assert refined.reprojection_px[K.LEFT_WRIST] > 1.0
    # Keypoints outside the limbs' distal joints are left alone.
    others = [k for k in range(21) if k not in {c for _, c in SEGMENTS}]
    assert np.array_equal(refined.points[others], plain.points[others])


def test_nothing_changes_until_a_segment_was_well_seen_often_enough(rig: CameraRig) -> None:
    tri = Triangulator(rig, rig.names)
    prior = BoneLengthPrior(min_samples=5)
    rng = np.random.default_rng(5)
    for person in _squats(4):
        plain = tri(project_all(rig, person) + rng.normal(0.0, SIGMA_PX, (4, 21, 2)), np.ones((4, 21)))
        assert prior(plain, tri) is plain
    assert np.isnan(prior.lengths()).all()
    prior(plain, tri)  # the fifth
    assert np.isfinite(prior.lengths()).all()
    prior.reset()
    assert np.isnan(prior.lengths()).all()
    # Without its inputs (a result built elsewhere), a triangulation is returned as it is.
    bare = Triangulation(plain.points, plain.reprojection_px, plain.used)
    assert prior(bare, tri) is bare


@pytest.mark.parametrize(
    "options", [{"good_px": 0.0}, {"length_sigma": -0.1}, {"window": 5, "min_samples": 6}, {"min_samples": 0}]
)
def test_bad_settings_are_refused(options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="positive"):
        BoneLengthPrior(**options)  # type: ignore[arg-type]
