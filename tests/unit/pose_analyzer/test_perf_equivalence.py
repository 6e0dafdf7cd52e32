"""The engine's fast per-frame paths against straightforward reference computations.

The per-person code (smoothing, angles, centre of mass, tracking IoU) is written as few
numpy calls or in plain floats for speed (benchmarks/pose_engine.py).  Here each is
checked against a plain per-keypoint formula on random poses with missing points,
zero-length segments, low confidences and glitches.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from pose_analyzer.biomechanics.angles import ANGLE_NAMES, JOINT_ANGLES, joint_angles_array
from pose_analyzer.biomechanics.com import center_of_mass
from pose_analyzer.biomechanics.person import person_angles_and_com
from pose_analyzer.keypoints import NUM_KEYPOINTS
from pose_analyzer.keypoints import Keypoint as K
from pose_analyzer.smoothing import KeypointSmoother, SmoothingConfig
from pose_analyzer.tracking import box_iou

Array = npt.NDArray[np.float64]


def _random_poses(rng: np.random.Generator, count: int) -> list[Array]:
    """Random (NUM_KEYPOINTS, 3) poses; some points NaN, some repeated (zero-length segments)."""
    poses = []
    for _ in range(count):
        kps = np.empty((NUM_KEYPOINTS, 3))
        kps[:, :2] = rng.uniform(0, 640, size=(NUM_KEYPOINTS, 2))
        kps[:, 2] = rng.uniform(0, 1, size=NUM_KEYPOINTS)
        kps[rng.random(NUM_KEYPOINTS) < 0.15, :2] = np.nan
        kps[rng.random(NUM_KEYPOINTS) < 0.05, 0] = np.nan  # only one coordinate missing
        for _ in range(rng.integers(0, 3)):
            a, b = rng.integers(0, NUM_KEYPOINTS, size=2)
            kps[a, :2] = kps[b, :2]
        poses.append(kps)
    return poses


def _mid(kps: Array, left: K, right: K) -> tuple[float, float]:
    out = []
    for axis in range(2):
        a, b = kps[left, axis], kps[right, axis]
        out.append(b if math.isnan(a) else a if math.isnan(b) else (a + b) / 2)
    return out[0], out[1]


def _reference_angle(u: tuple[float, float], v: tuple[float, float]) -> float:
    """Angle between u and v in degrees from the cosine; NaN if either is missing or zero."""
    nu, nv = math.hypot(*u), math.hypot(*v)
    if math.isnan(nu) or math.isnan(nv) or nu == 0 or nv == 0:
        return math.nan
    cosine = (u[0] * v[0] + u[1] * v[1]) / (nu * nv)
    return math.degrees(math.acos(min(1.0, max(-1.0, cosine))))


def _angle_vectors(kps: Array) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """The two vectors of every angle in ANGLE_NAMES order."""
    pairs = []
    for a, b, c in JOINT_ANGLES.values():
        u = (kps[a, 0] - kps[b, 0], kps[a, 1] - kps[b, 1])
        v = (kps[c, 0] - kps[b, 0], kps[c, 1] - kps[b, 1])
        pairs.append((u, v))
    hips, shoulders = _mid(kps, K.LEFT_HIP, K.RIGHT_HIP), _mid(kps, K.LEFT_SHOULDER, K.RIGHT_SHOULDER)
    ears = _mid(kps, K.LEFT_EAR, K.RIGHT_EAR)
    pairs.append(((shoulders[0] - hips[0], shoulders[1] - hips[1]), (0.0, -1.0)))
    pairs.append(
        ((hips[0] - shoulders[0], hips[1] - shoulders[1]), (ears[0] - shoulders[0], ears[1] - shoulders[1]))
    )
    return pairs


def _reference_angles(kps: Array) -> list[float]:
    return [_reference_angle(u, v) for u, v in _angle_vectors(kps)]


EPS = float(np.finfo(np.float64).eps)


def _rounding_bound_deg(kps: Array) -> Array:
    """How far two correct float64 evaluations of each angle may differ, in degrees.

    Each path computes atan2(|cross|, dot) from the same float64 coordinates, but in its own
    order of operations (numpy's SIMD kernels, with or without FMA, against plain floats).
    The cross and dot products are each off by at most 2 eps * |u||v| (two roundings of terms
    bounded by |u||v|), which moves the angle by at most (|d cross| + |d dot|) / (|u||v|) = 4 eps
    radians; atan2 and the conversion to degrees add 2 eps relative.  Midpoints round once:
    a coordinate error of eps * |x| on a segment of length |u| turns it by eps * |x| / |u|.
    Summed, and doubled because both paths carry such an error.
    """
    scale = float(np.nanmax(np.abs(kps[:, :2])))
    bounds = []
    for u, v in _angle_vectors(kps):
        nu, nv = math.hypot(*u), math.hypot(*v)
        if math.isnan(nu) or math.isnan(nv) or nu == 0 or nv == 0:
            bounds.append(0.0)
            continue
        radians = 6 * EPS + EPS * scale * (1 / nu + 1 / nv)
        bounds.append(2 * math.degrees(radians) + 2 * EPS * 180)
    return np.array(bounds)


def test_person_angles_match_a_per_joint_formula_and_the_batch_function() -> None:
    rng = np.random.default_rng(7)
    for kps in _random_poses(rng, 300):
        angles, _ = person_angles_and_com(kps.astype(np.float32))
        batch = joint_angles_array(kps.astype(np.float32))
        # Same formula as the batch function, other operation order: equal within rounding, NaNs alike.
        np.testing.assert_array_equal(np.isnan(angles), np.isnan(batch))
        bound = _rounding_bound_deg(kps.astype(np.float32).astype(np.float64))
        assert (np.abs(angles - batch)[~np.isnan(batch)] <= bound[~np.isnan(batch)]).all()
        expected = _reference_angles(kps.astype(np.float32).astype(np.float64))
        assert angles.shape == (len(ANGLE_NAMES),)
        np.testing.assert_allclose(angles, expected, atol=1e-6)


def _reference_com(kps: Array) -> tuple[float, float] | None:
    """Winter's segment table (com.py's docstring), one segment at a time."""
    limbs = [
        (K.LEFT_SHOULDER, K.LEFT_ELBOW, 0.028, 0.436),
        (K.RIGHT_SHOULDER, K.RIGHT_ELBOW, 0.028, 0.436),
        (K.LEFT_ELBOW, K.LEFT_WRIST, 0.022, 0.682),
        (K.RIGHT_ELBOW, K.RIGHT_WRIST, 0.022, 0.682),
        (K.LEFT_HIP, K.LEFT_KNEE, 0.100, 0.433),
        (K.RIGHT_HIP, K.RIGHT_KNEE, 0.100, 0.433),
        (K.LEFT_KNEE, K.LEFT_ANKLE, 0.0465, 0.433),
        (K.RIGHT_KNEE, K.RIGHT_ANKLE, 0.0465, 0.433),
        (K.LEFT_ANKLE, K.LEFT_FOOT_INDEX, 0.0145, 0.50),
        (K.RIGHT_ANKLE, K.RIGHT_FOOT_INDEX, 0.0145, 0.50),
    ]
    centres = [
        ((kps[p, 0] + f * (kps[d, 0] - kps[p, 0]), kps[p, 1] + f * (kps[d, 1] - kps[p, 1])), m)
        for p, d, m, f in limbs
    ]
    shoulders = _mid(kps, K.LEFT_SHOULDER, K.RIGHT_SHOULDER)
    hips = _mid(kps, K.LEFT_HIP, K.RIGHT_HIP)
    centres.append((((shoulders[0] + hips[0]) / 2, (shoulders[1] + hips[1]) / 2), 0.497))
    centres.append((_mid(kps, K.LEFT_EAR, K.RIGHT_EAR), 0.081))
    seen = [(c, m) for c, m in centres if not (math.isnan(c[0]) or math.isnan(c[1]))]
    if not seen:
        return None
    total = sum(m for _, m in seen)
    return sum(c[0] * m for c, m in seen) / total, sum(c[1] * m for c, m in seen) / total


def test_person_centre_of_mass_matches_a_per_segment_formula_and_the_batch_function() -> None:
    rng = np.random.default_rng(11)
    poses = _random_poses(rng, 300)
    nobody = np.full((NUM_KEYPOINTS, 3), np.nan)
    for kps in [*poses, nobody]:
        _, com = person_angles_and_com(kps)
        # A weighted mean of at most 12 segment centres: each product and sum rounds once, so two
        # operation orders differ by at most 2 * 3 * 12 eps times the largest coordinate.
        scale = float(np.nanmax(np.abs(kps[:, :2]), initial=0.0))
        np.testing.assert_allclose(com, center_of_mass(kps), rtol=0, atol=72 * EPS * scale)
        expected = _reference_com(kps)
        if expected is None:
            assert np.isnan(com).all()
        else:
            np.testing.assert_allclose(com, expected, rtol=1e-9)


def test_person_angles_and_com_rejects_a_batch() -> None:
    with pytest.raises(ValueError, match="keypoints must be"):
        person_angles_and_com(np.zeros((2, NUM_KEYPOINTS, 3)))


class _ReferenceSmoother:
    """The gating and One Euro filter of smoothing.py, one coordinate at a time in plain floats."""

    def __init__(self, config: SmoothingConfig) -> None:
        self.c = config
        self.last: list[list[float]] | None = None
        self.missing = [0] * NUM_KEYPOINTS
        self.seen_t = [0.0] * NUM_KEYPOINTS
        self.x: list[list[float]] | None = None
        self.dx = [[0.0, 0.0] for _ in range(NUM_KEYPOINTS)]
        self.t = 0.0

    @staticmethod
    def _alpha(cutoff: float, dt: float) -> float:
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def update(self, kps: Array, t: float) -> Array:
        c = self.c
        xy = [[float(kps[i, 0]), float(kps[i, 1])] for i in range(NUM_KEYPOINTS)]
        seen = [
            kps[i, 2] >= c.min_confidence and not any(map(math.isnan, xy[i])) for i in range(NUM_KEYPOINTS)
        ]
        visible = [xy[i] for i in range(NUM_KEYPOINTS) if seen[i]]
        scale = 1.0
        if len(visible) >= 2:
            spans = [max(p[a] for p in visible) - min(p[a] for p in visible) for a in range(2)]
            scale = max((spans[0] + spans[1]) / 2, 1.0)
        for i in range(NUM_KEYPOINTS):
            if self.last is not None:
                elapsed = max(t - self.seen_t[i], 1e-6)
                speed = math.hypot(xy[i][0] - self.last[i][0], xy[i][1] - self.last[i][1]) / scale / elapsed
                seen[i] = seen[i] and not speed > c.max_speed
            self.seen_t[i] = t if seen[i] else self.seen_t[i]
            self.missing[i] = 0 if seen[i] else self.missing[i] + 1
            if not seen[i]:
                held = self.last is not None and self.missing[i] <= c.max_hold_frames
                xy[i] = list(self.last[i]) if held and self.last is not None else [math.nan, math.nan]
        if self.x is None:
            self.x = [list(p) for p in xy]
        else:
            dt = t - self.t
            for i in range(NUM_KEYPOINTS):
                for a in range(2):
                    x, previous = xy[i][a], self.x[i][a]
                    fresh = math.isnan(previous) and not math.isnan(x)
                    prev = x if fresh else previous
                    rate = (x - prev) / (dt * scale)
                    rate_hat = (
                        0.0 if fresh else self.dx[i][a] + self._alpha(c.d_cutoff, dt) * (rate - self.dx[i][a])
                    )
                    cutoff = c.min_cutoff + c.beta * abs(rate_hat)
                    self.x[i][a] = prev + self._alpha(cutoff, dt) * (x - prev)
                    self.dx[i][a] = 0.0 if math.isnan(rate_hat) else rate_hat
        self.t = t
        self.last = [list(p) for p in self.x]
        return np.array([[*p, kps[i, 2]] for i, p in enumerate(self.x)])


def test_smoother_matches_a_per_coordinate_reference() -> None:
    rng = np.random.default_rng(3)
    config = SmoothingConfig()
    fast, reference = KeypointSmoother(config), _ReferenceSmoother(config)
    base = rng.uniform(100, 500, size=(NUM_KEYPOINTS, 2))
    t = 0.0
    for frame in range(200):
        t += float(rng.uniform(0.02, 0.06))
        kps = np.empty((NUM_KEYPOINTS, 3))
        kps[:, :2] = (
            base + 40 * np.sin(t + np.arange(NUM_KEYPOINTS))[:, None] + rng.normal(0, 2, (NUM_KEYPOINTS, 2))
        )
        kps[:, 2] = rng.uniform(0.3, 1.0, size=NUM_KEYPOINTS)  # some under min_confidence
        kps[rng.random(NUM_KEYPOINTS) < 0.1, :2] = np.nan
        if frame % 17 == 5:
            kps[rng.integers(0, NUM_KEYPOINTS), :2] += 300  # a glitch the speed gate rejects
        if 60 <= frame < 75:
            kps[K.LEFT_WRIST, 2] = 0.0  # occluded longer than max_hold_frames
        out = fast.update(kps, t)
        expected = reference.update(kps, t)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, expected.astype(np.float32), rtol=1e-6, atol=1e-4, equal_nan=True)


def test_box_iou_in_plain_floats_matches_the_formula() -> None:
    rng = np.random.default_rng(5)
    for _ in range(200):
        a = np.sort(rng.uniform(0, 100, size=(2, 2)), axis=0).T.ravel()[[0, 2, 1, 3]]
        b = tuple(np.sort(rng.uniform(0, 100, size=(2, 2)), axis=0).T.ravel()[[0, 2, 1, 3]].tolist())
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
        expected = w * h / union if w > 0 and h > 0 else 0.0
        assert box_iou(a, b) == pytest.approx(expected, rel=1e-12)
