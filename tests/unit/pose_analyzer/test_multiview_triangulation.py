"""Triangulation against synthetic ground truth projected through the real demo rig.

The noise bound, derived (also in docs/multiview.md):  with isotropic Gaussian pixel noise
sigma per coordinate, camera c sees the point through the Jacobian
J_c = (f / d_c) [r1 - x r3; r2 - y r3] (depth d_c, focal f ~ 1678 px here); the best
unbiased estimate has covariance S = (sum_c J_c^T J_c / sigma^2)^-1 (Cramer-Rao), which
least-squares triangulation reaches to first order.  Rule of thumb: for C cameras in a
ring around the subject, sum_c J_c^T J_c ~ (f/d)^2 C diag(1/2, 1/2, 1), so the RMS 3D error is
sigma d / f sqrt(5 / C): with sigma = 2 px, d ~ 3.5 m, C = 4, about 4.7 mm.
The tests use the exact S of every keypoint: the error e satisfies e^T S^-1 e ~ chi2(3), so
|e| <= 6 sqrt(lambda_max(S)) fails with probability P(chi2_3 > 36) = 6e-8 per point, below
1e-4 over the ~2000 points of a test; and the mean of |e|^2 over those points must match
tr(S) within 20 % (its relative standard deviation there is about 3 %).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from pose_analyzer.multiview import Camera, CameraRig, RigError, read_rig
from pose_analyzer.multiview.triangulation import MIRRORED, Triangulator, solve_dlt, triangulate
from tests.multiview_synthetic import first_order_covariance, project_all, random_people

SIGMA_PX = 2.0
N_PEOPLE = 100
CHI2_3_TAIL = 6.0  # sigmas: P(chi2_3 > 36) = 6e-8
# A gross error: a wrong limb, 5-30 % of the 1088 px frame width.  Errors much smaller can
# hide under the 15 px threshold: the DLT spreads a camera's error over all of them, and
# on this rig the wrong camera keeps only ~40 % of it (a 34 px error reprojects at 14 px).
GROSS_PX = (60.0, 300.0)


@pytest.fixture(scope="module")
def rig(test_data: Path) -> CameraRig:
    return read_rig(test_data / "multicam" / "Calib.qca.txt")


@pytest.fixture(scope="module")
def people() -> np.ndarray:
    return random_people(np.random.default_rng(12), N_PEOPLE)


def _bounds(rig: CameraRig, points: np.ndarray, cameras: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per point: 6 sqrt(largest eigenvalue) and trace of the first-order covariance."""
    covs = [first_order_covariance(rig, p, SIGMA_PX, cameras) for p in points]
    return (
        np.array([CHI2_3_TAIL * np.sqrt(np.linalg.eigvalsh(s)[-1]) for s in covs]),
        np.array([np.trace(s) for s in covs]),
    )


def test_every_keypoint_is_inside_every_image(rig: CameraRig, people: np.ndarray) -> None:
    for person in people:
        uv = project_all(rig, person)
        for cam, pts in zip(rig, uv, strict=True):
            assert (pts >= 0).all()
            assert (pts < np.array(cam.image_size)).all()
            assert (cam.depth(person) > 1.0).all()


def test_noiseless_points_come_back_within_a_micrometre(rig: CameraRig, people: np.ndarray) -> None:
    tri = Triangulator(rig, rig.names)
    for person in people[:20]:
        result = tri(project_all(rig, person), np.ones((4, 21)))
        assert np.abs(result.points - person).max() < 1e-6  # 1 mm asked; exact data gives ~1e-12
        assert result.reprojection_px.max() < 1e-6
        assert result.used.all()


def test_two_px_noise_stays_within_the_derived_bound(rig: CameraRig, people: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    tri = Triangulator(rig, rig.names)
    errors, bounds, traces = [], [], []
    for person in people:
        noisy = project_all(rig, person) + rng.normal(0.0, SIGMA_PX, (4, 21, 2))
        result = tri(noisy, np.ones((4, 21)))
        assert result.used.all()  # 2 px noise is no outlier at 15 px
        errors.append(np.linalg.norm(result.points - person, axis=1))
        b, t = _bounds(rig, person, [0, 1, 2, 3])
        bounds.append(b)
        traces.append(t)
        # the reprojection error of a right triangulation is the noise left over: ~sigma
        assert 0.5 * SIGMA_PX < np.mean(result.reprojection_px) < 2 * SIGMA_PX
    err, bound, trace = np.concatenate(errors), np.concatenate(bounds), np.concatenate(traces)
    assert (err <= bound).all(), (
        f"worst error {err.max() * 1e3:.1f} mm over bound {bound[err.argmax()] * 1e3:.1f}"
    )
    ratio = np.mean(err**2) / np.mean(trace)
    assert 0.8 < ratio < 1.2, f"mean squared error is {ratio:.2f} x the Cramer-Rao trace"
    # the rule of thumb sigma d / f sqrt(5 / C) is the right size on this rig
    thumb = SIGMA_PX * 3.5 / 1678.0 * np.sqrt(5 / 4)
    assert 0.6 < np.sqrt(np.mean(trace)) / thumb < 1.6


@pytest.mark.parametrize("bad_camera", [0, 1, 2, 3])
def test_a_grossly_wrong_camera_is_rejected(rig: CameraRig, people: np.ndarray, bad_camera: int) -> None:
    rng = np.random.default_rng(100 + bad_camera)
    good = [c for c in range(4) if c != bad_camera]
    tri = Triangulator(rig, rig.names)
    plain = Triangulator(rig, rig.names, outlier_px=np.inf)
    worst_plain = 0.0
    for person in people[:40]:
        noisy = project_all(rig, person) + rng.normal(0.0, SIGMA_PX, (4, 21, 2))
        angle = rng.uniform(0, 2 * np.pi, 21)
        noisy[bad_camera] += rng.uniform(GROSS_PX[0], GROSS_PX[1], (21, 1)) * np.stack(
            [np.cos(angle), np.sin(angle)], axis=1
        )
        result = tri(noisy, np.ones((4, 21)))
        assert not result.used[bad_camera].any()
        assert result.used[good].all()
        bound, _ = _bounds(rig, person, good)
        assert (np.linalg.norm(result.points - person, axis=1) <= bound).all()
        worst_plain = max(
            worst_plain,
            float((np.linalg.norm(plain(noisy, np.ones((4, 21))).points - person, axis=1) / bound).max()),
        )
    assert worst_plain > 1.0  # without rejection the same data breaks the bound


def test_never_below_two_cameras(rig: CameraRig, people: np.ndarray) -> None:
    person = people[0]
    uv = project_all(rig, person)
    uv[1] += 200.0
    uv[2] -= 150.0
    result = triangulate(uv, np.ones((4, 21)), rig, rig.names)
    assert (result.used.sum(axis=0) >= 2).all()
    assert np.isfinite(result.points).all()
    assert np.isfinite(result.reprojection_px).all()


def test_unseen_and_unconfident_keypoints(rig: CameraRig, people: np.ndarray) -> None:
    person = people[3]
    uv = project_all(rig, person)
    conf = np.full((4, 21), 0.9)
    uv[:3, 0] = np.nan  # nose: one camera only
    conf[:, 5] = [0.9, 0.1, 0.2, 0.0]  # left shoulder: one confident camera
    conf[2:, 6] = 0.1  # right shoulder: two confident cameras
    conf[0, 7] = np.nan
    result = triangulate(uv, conf, rig, rig.names, min_confidence=0.3)
    assert np.isnan(result.points[[0, 5]]).all()
    assert np.isnan(result.reprojection_px[[0, 5]]).all()
    assert not result.used[:, [0, 5]].any()
    assert result.used[:, 6].tolist() == [True, True, False, False]
    assert result.used[:, 7].tolist() == [False, True, True, True]
    np.testing.assert_allclose(result.points[6:], person[6:], atol=1e-6)


def test_camera_subset_in_any_order(rig: CameraRig, people: np.ndarray) -> None:
    person = people[5]
    uv = project_all(rig, person)
    order = ["cam04", "cam02", "cam03"]
    result = triangulate(uv[[3, 1, 2]], np.ones((3, 21)), rig, order)
    np.testing.assert_allclose(result.points, person, atol=1e-6)
    with pytest.raises(ValueError, match="points2d must be"):
        triangulate(uv, np.ones((4, 21)), rig, order)
    with pytest.raises(RigError, match="no camera 'cam7'"):
        triangulate(uv[:2], np.ones((2, 21)), rig, ["cam01", "cam7"])


def _svd_dlt(extrinsics: np.ndarray, xy: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Reference: the textbook homogeneous DLT, one SVD per point."""
    out = []
    for n in range(xy.shape[1]):
        rows = []
        for c in range(extrinsics.shape[0]):
            p, (x, y), w = extrinsics[c], xy[c, n], weights[c, n]
            rows += [w * (x * p[2] - p[0]), w * (y * p[2] - p[1])]
        h = np.linalg.svd(np.array(rows))[2][-1]
        out.append(h[:3] / h[3])
    return np.array(out)


def test_batched_normal_equations_agree_with_the_svd_dlt(rig: CameraRig, people: np.ndarray) -> None:
    tri = Triangulator(rig, rig.names)
    rng = np.random.default_rng(5)
    for person in people[:5]:
        xy, _ = tri._undistort(project_all(rig, person))
        w = rng.uniform(0.3, 1.0, (4, 21))
        # exact data: both are the exact point; the gap is rounding, conditioned by ~1e3
        np.testing.assert_allclose(
            solve_dlt(tri.extrinsics, xy, w), _svd_dlt(tri.extrinsics, xy, w), atol=1e-9
        )


def test_numpy_distortion_model_matches_opencv(rig: CameraRig, people: np.ndarray) -> None:
    base = rig.cameras[0]
    strong = Camera(
        "wide",
        base.image_size,
        base.matrix,
        [-0.3, 0.12, 0.002, -0.001, -0.02],
        base.rotation,
        base.translation,
    )
    for cam_rig in (rig, CameraRig((strong, rig.cameras[1]))):
        tri = Triangulator(cam_rig, cam_rig.names)
        ours = tri.project(people[7])
        for c, cam in enumerate(cam_rig):
            img = cv2.projectPoints(people[7], cam.rvec, cam.translation, cam.matrix, cam.distortion)[
                0
            ].reshape(-1, 2)
            # same closed form in float64 on values ~1e3 px: any gap beyond 1e-9 px is a model difference
            np.testing.assert_allclose(ours[c], img, atol=1e-9)


def test_a_camera_that_swapped_left_and_right_is_put_right(rig: CameraRig, people: np.ndarray) -> None:
    """A detector seeing the person from behind labels the left limbs right: fixed, and kept."""
    rng = np.random.default_rng(21)
    tri = Triangulator(rig, rig.names)
    plain = Triangulator(rig, rig.names, swap_sides=False, outlier_px=np.inf)
    states = []
    for i, person in enumerate(people[:12]):
        uv = project_all(rig, person) + rng.normal(0.0, SIGMA_PX, (4, 21, 2))
        if 3 <= i < 9:
            uv[2] = uv[2][MIRRORED]  # cam03 swaps sides for six groups
        result = tri(uv, np.ones((4, 21)))
        states.append(result.swapped)
        bound, _ = _bounds(rig, person, [0, 1, 2, 3])
        assert (np.linalg.norm(result.points - person, axis=1) <= bound).all()
        if 3 <= i < 9:
            assert (
                np.nanmax(np.linalg.norm(plain(uv, np.ones((4, 21))).points - person, axis=1)) > bound.max()
            )
    assert states == [()] * 3 + [("cam03",)] * 6 + [()] * 3
    tri.reset()
    assert tri(project_all(rig, people[0]), np.ones((4, 21))).swapped == ()
