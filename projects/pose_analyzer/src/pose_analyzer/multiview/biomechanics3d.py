"""3D biomechanics from triangulated keypoints (metres, the rig's world frame).

The names and conventions are those of the 2D ``biomechanics`` and ``posture`` modules, so
the exercise YAML files, the rep counter and the form scorer run unchanged on a 3D session:

- joint angles: the unsigned interior angle at the middle keypoint, in [0, 180] degrees
  (180 = straight limb), now between 3D vectors, so free of the projection error a camera
  seen at 45 degrees adds;
- ``trunk_lean``: the angle between the hip-to-shoulder line and world "up" (0 = upright);
  ``neck``: the interior angle hips-shoulders-ears (midpoints);
- measures (``knee_width_ratio`` ...) and posture (``trunk_incline`` ...): "horizontal"
  means in the plane perpendicular to "up", "height" means along "up".

"Up" is the rig's vertical axis: +z for Qualisys and Pose2Sim calibrations (the default);
pass ``up`` for a rig calibrated otherwise.  Segment lengths, the centre of mass (Dempster's
fractions as in ``biomechanics/com.py``) and velocities come in metres and metres per second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pose_analyzer.biomechanics.angles import ANGLE_NAMES, JOINT_ANGLES
from pose_analyzer.biomechanics.com import (
    SEGMENT_COM_FRACTION,
    SEGMENT_DISTAL,
    SEGMENT_MASSES,
    SEGMENT_PROXIMAL,
    TRUNK_COM_FRACTION,
)
from pose_analyzer.biomechanics.symmetry import symmetry_indices
from pose_analyzer.keypoints import NUM_KEYPOINTS
from pose_analyzer.keypoints import Keypoint as K
from pose_analyzer.smoothing import OneEuroFilter, SmoothingConfig

FloatArray = npt.NDArray[np.float64]
Z_UP: tuple[float, float, float] = (0.0, 0.0, 1.0)
_Z_UNIT = np.array(Z_UP)

# Rigid segments whose length should not change over a clip (name -> proximal, distal).
SEGMENTS: dict[str, tuple[K, K]] = {
    "left_thigh": (K.LEFT_HIP, K.LEFT_KNEE),
    "right_thigh": (K.RIGHT_HIP, K.RIGHT_KNEE),
    "left_shank": (K.LEFT_KNEE, K.LEFT_ANKLE),
    "right_shank": (K.RIGHT_KNEE, K.RIGHT_ANKLE),
    "left_upper_arm": (K.LEFT_SHOULDER, K.LEFT_ELBOW),
    "right_upper_arm": (K.RIGHT_SHOULDER, K.RIGHT_ELBOW),
    "left_forearm": (K.LEFT_ELBOW, K.LEFT_WRIST),
    "right_forearm": (K.RIGHT_ELBOW, K.RIGHT_WRIST),
    "shoulder_width": (K.LEFT_SHOULDER, K.RIGHT_SHOULDER),
    "hip_width": (K.LEFT_HIP, K.RIGHT_HIP),
}
SEGMENT_NAMES: tuple[str, ...] = tuple(SEGMENTS)
_SEG_A = np.array([s[0] for s in SEGMENTS.values()], dtype=np.intp)
_SEG_B = np.array([s[1] for s in SEGMENTS.values()], dtype=np.intp)
_PROX = np.array([t[0] for t in JOINT_ANGLES.values()], dtype=np.intp)
_VERT = np.array([t[1] for t in JOINT_ANGLES.values()], dtype=np.intp)
_DIST = np.array([t[2] for t in JOINT_ANGLES.values()], dtype=np.intp)
# The same, and the centre of mass's constants, as plain numbers for ``analyse_pose_3d``.
_JOINTS = [(int(a), int(b), int(c)) for a, b, c in JOINT_ANGLES.values()]
_COM_FRACTIONS: list[float] = SEGMENT_COM_FRACTION.tolist()
_MASSES: list[float] = SEGMENT_MASSES.tolist()


def _unit_up(up: npt.ArrayLike) -> FloatArray:
    if up is Z_UP:  # the default, once per group for every measure: no need to normalise it again
        return _Z_UNIT
    u = np.asarray(up, dtype=np.float64).reshape(3)
    norm = float(np.linalg.norm(u))
    if not norm > 0:
        raise ValueError("up must be a non-zero 3D vector")
    return u / norm


def angle_between(u: FloatArray, v: FloatArray) -> FloatArray:
    """Unsigned angle between 3D vectors (..., 3) in degrees; NaN when either has zero length.

    atan2(|u x v|, u . v): accurate near 0 and 180 degrees, unlike arccos of the cosine.
    (The cross product is written out: ``np.cross`` costs ten times as much on small arrays.)
    """
    ux, uy, uz = u[..., 0], u[..., 1], u[..., 2]
    vx, vy, vz = v[..., 0], v[..., 1], v[..., 2]
    cx, cy, cz = uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx
    cross = np.sqrt(cx * cx + cy * cy + cz * cz)
    dot = ux * vx + uy * vy + uz * vz
    degenerate = ((ux * ux + uy * uy + uz * uz) == 0) | ((vx * vx + vy * vy + vz * vz) == 0)
    return np.asarray(np.where(degenerate, np.nan, np.degrees(np.arctan2(cross, dot))))


def _angle(u: list[float], v: list[float]) -> float:
    """``angle_between`` of two plain 3-vectors (per pose, numpy's call overhead would dominate)."""
    c = (u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0])
    if not any(u) or not any(v):
        return math.nan
    return math.degrees(math.atan2(math.hypot(*c), u[0] * v[0] + u[1] * v[1] + u[2] * v[2]))


def _sub(a: list[float], b: list[float]) -> list[float]:
    return [a[0] - b[0], a[1] - b[1], a[2] - b[2]]


def _dot(a: list[float], b: list[float]) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _mid_list(p: list[list[float]], left: K, right: K) -> list[float]:
    a, b = p[left], p[right]
    return [x if math.isnan(y) else y if math.isnan(x) else 0.5 * (x + y) for x, y in zip(a, b, strict=True)]


def _mid(p: FloatArray, left: K, right: K) -> FloatArray:
    """Midpoint of a left/right pair; the one seen point when the other is missing."""
    a, b = p[..., left, :], p[..., right, :]
    return np.asarray(np.where(np.isnan(a), b, np.where(np.isnan(b), a, 0.5 * (a + b))))


def joint_angles_3d(points: npt.ArrayLike, up: npt.ArrayLike = Z_UP) -> FloatArray:
    """All ``ANGLE_NAMES`` angles (..., len(ANGLE_NAMES)) in degrees of points (..., NUM_KEYPOINTS, 3)."""
    p = np.asarray(points, dtype=np.float64)
    hips, shoulders, ears = (
        _mid(p, K.LEFT_HIP, K.RIGHT_HIP),
        _mid(p, K.LEFT_SHOULDER, K.RIGHT_SHOULDER),
        _mid(p, K.LEFT_EAR, K.RIGHT_EAR),
    )
    trunk = shoulders - hips
    # One angle_between call for the joints, the trunk lean and the neck (per pose, each call's
    # overhead costs more than its arithmetic).
    first = np.concatenate(
        [p[..., _PROX, :] - p[..., _VERT, :], trunk[..., None, :], (hips - shoulders)[..., None, :]], axis=-2
    )
    second = np.concatenate(
        [
            p[..., _DIST, :] - p[..., _VERT, :],
            np.broadcast_to(_unit_up(up), trunk.shape)[..., None, :],
            (ears - shoulders)[..., None, :],
        ],
        axis=-2,
    )
    return angle_between(first, second)


def segment_lengths(points: npt.ArrayLike) -> FloatArray:
    """Lengths (..., len(SEGMENT_NAMES)) in metres of the ``SEGMENTS``; NaN where an end is unseen."""
    p = np.asarray(points, dtype=np.float64)
    return np.asarray(np.linalg.norm(p[..., _SEG_B, :] - p[..., _SEG_A, :], axis=-1))


def center_of_mass_3d(points: npt.ArrayLike) -> FloatArray:
    """Whole-body centre of mass (..., 3) in metres, as ``biomechanics.center_of_mass`` in 3D.

    Segments with an unseen end are left out and the rest re-weighted; NaN when none is seen.
    """
    p = np.asarray(points, dtype=np.float64)
    proximal, distal = p[..., SEGMENT_PROXIMAL, :], p[..., SEGMENT_DISTAL, :]
    limbs = proximal + SEGMENT_COM_FRACTION[:, None] * (distal - proximal)
    shoulders, hips = _mid(p, K.LEFT_SHOULDER, K.RIGHT_SHOULDER), _mid(p, K.LEFT_HIP, K.RIGHT_HIP)
    trunk = shoulders + TRUNK_COM_FRACTION * (hips - shoulders)
    head = _mid(p, K.LEFT_EAR, K.RIGHT_EAR)
    centres = np.concatenate([limbs, trunk[..., None, :], head[..., None, :]], axis=-2)
    seen = ~np.isnan(centres).any(axis=-1)
    w = np.where(seen, SEGMENT_MASSES, 0.0)
    total = w.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        com = (np.where(seen[..., None], centres, 0.0) * w[..., None]).sum(axis=-2) / total
    return np.asarray(np.where(total > 0, com, np.nan))


def _ratio(num: float, den: float) -> float:
    return num / den if den > 1e-9 else math.nan


def body_measures_3d(points: npt.ArrayLike, up: npt.ArrayLike = Z_UP) -> dict[str, float]:
    """``biomechanics.MEASURE_NAMES`` of one person's (NUM_KEYPOINTS, 3) points.

    Horizontal distances are measured in the plane perpendicular to ``up``, heights along it.
    Plain floats on a handful of points: per pose, numpy's call overhead would cost more.
    """
    return _body_measures(np.asarray(points, dtype=np.float64).tolist(), _unit_up(up).tolist())


def _body_measures(p: list[list[float]], u: list[float]) -> dict[str, float]:
    height = [_dot(q, u) for q in p]

    def horizontal(a: K, b: K) -> float:
        d = _sub(p[a], p[b])
        along = _dot(d, u)
        return math.hypot(d[0] - along * u[0], d[1] - along * u[1], d[2] - along * u[2])

    def dist(a: K, b: K) -> float:
        return math.dist(p[a], p[b])

    legs = [
        dist(K.LEFT_HIP, K.LEFT_KNEE) + dist(K.LEFT_KNEE, K.LEFT_ANKLE),
        dist(K.RIGHT_HIP, K.RIGHT_KNEE) + dist(K.RIGHT_KNEE, K.RIGHT_ANKLE),
    ]
    seen = [v for v in legs if not math.isnan(v)]
    leg = max(seen) if seen else math.nan
    hip_h = _pair_mean(height, K.LEFT_HIP, K.RIGHT_HIP)
    ankle_h = _pair_mean(height, K.LEFT_ANKLE, K.RIGHT_ANKLE)
    return {
        "knee_width_ratio": _ratio(
            horizontal(K.LEFT_KNEE, K.RIGHT_KNEE), horizontal(K.LEFT_ANKLE, K.RIGHT_ANKLE)
        ),
        "stance_width_ratio": _ratio(
            horizontal(K.LEFT_ANKLE, K.RIGHT_ANKLE), horizontal(K.LEFT_SHOULDER, K.RIGHT_SHOULDER)
        ),
        "left_ankle_height": _ratio(height[K.LEFT_ANKLE] - height[K.LEFT_HIP], leg),
        "right_ankle_height": _ratio(height[K.RIGHT_ANKLE] - height[K.RIGHT_HIP], leg),
        "hip_height": _ratio(hip_h - ankle_h, leg),
    }


def _pair_mean(values: list[float], left: K, right: K) -> float:
    seen = [v for v in (values[left], values[right]) if not math.isnan(v)]
    return sum(seen) / len(seen) if seen else math.nan


def posture_measures_3d(points: npt.ArrayLike, up: npt.ArrayLike = Z_UP) -> dict[str, float]:
    """``posture.POSTURE_NAMES`` of one person's (NUM_KEYPOINTS, 3) points (``posture_measures`` in 3D)."""
    return _posture_measures(np.asarray(points, dtype=np.float64).tolist(), _unit_up(up).tolist())


def _posture_measures(p: list[list[float]], u: list[float]) -> dict[str, float]:
    shoulders, hips = _mid_list(p, K.LEFT_SHOULDER, K.RIGHT_SHOULDER), _mid_list(p, K.LEFT_HIP, K.RIGHT_HIP)
    ankles = _mid_list(p, K.LEFT_ANKLE, K.RIGHT_ANKLE)
    trunk = _sub(shoulders, hips)
    length = math.sqrt(_dot(trunk, trunk))
    rise = _dot(trunk, u)
    out = {
        "trunk_incline": math.degrees(math.asin(min(1.0, abs(rise) / length))) if length > 1e-9 else math.nan,
        "hips_below_shoulders": _ratio(rise, length),
        "body_line": _angle(trunk, _sub(ankles, hips)),
    }
    for side, (s, e, w) in {
        "left": (K.LEFT_SHOULDER, K.LEFT_ELBOW, K.LEFT_WRIST),
        "right": (K.RIGHT_SHOULDER, K.RIGHT_ELBOW, K.RIGHT_WRIST),
    }.items():
        arm = math.dist(p[s], p[e]) + math.dist(p[e], p[w])
        out[f"{side}_wrist_reach"] = _ratio(math.dist(p[s], p[w]), arm)
    return out


@dataclass(frozen=True)
class Analysis3D:
    """Everything the rep counter and the exports need from one 3D pose."""

    angles: dict[str, float]  # ANGLE_NAMES, degrees
    measures: dict[str, float]  # MEASURE_NAMES + POSTURE_NAMES + <joint>_symmetry
    segments: dict[str, float]  # SEGMENT_NAMES, metres
    center_of_mass: FloatArray  # (3,) metres


def analyse_pose_3d(points: npt.ArrayLike, up: npt.ArrayLike = Z_UP) -> Analysis3D:
    """Angles, measures, segment lengths and centre of mass of one (NUM_KEYPOINTS, 3) pose.

    The same values as ``joint_angles_3d``, ``segment_lengths`` and ``center_of_mass_3d``, in
    plain floats from one ``tolist``: this runs for every group of a live session, where each
    numpy call costs several microseconds (test_multiview_biomechanics3d compares them).
    """
    p = np.asarray(points, dtype=np.float64)
    if p.shape != (NUM_KEYPOINTS, 3):
        raise ValueError(f"points must be ({NUM_KEYPOINTS}, 3), got {p.shape}")
    q = p.tolist()
    u = _unit_up(up).tolist()
    hips, shoulders = _mid_list(q, K.LEFT_HIP, K.RIGHT_HIP), _mid_list(q, K.LEFT_SHOULDER, K.RIGHT_SHOULDER)
    ears = _mid_list(q, K.LEFT_EAR, K.RIGHT_EAR)
    values = [_angle(_sub(q[a], q[b]), _sub(q[c], q[b])) for a, b, c in _JOINTS]
    values += [_angle(_sub(shoulders, hips), u), _angle(_sub(hips, shoulders), _sub(ears, shoulders))]
    angles = dict(zip(ANGLE_NAMES, values, strict=True))
    measures = {**_body_measures(q, u), **_posture_measures(q, u), **symmetry_indices(angles)}
    segments = {name: math.dist(q[a], q[b]) for name, (a, b) in SEGMENTS.items()}
    # The centre of mass: limb centres, the trunk's, the head's, each weighed when seen.
    centres = [
        [x + f * (y - x) for x, y in zip(q[a], q[b], strict=True)]
        for a, b, f in zip(SEGMENT_PROXIMAL.tolist(), SEGMENT_DISTAL.tolist(), _COM_FRACTIONS, strict=True)
    ]
    centres += [[s + TRUNK_COM_FRACTION * (h - s) for s, h in zip(shoulders, hips, strict=True)], ears]
    com, total = [0.0, 0.0, 0.0], 0.0
    for centre, mass in zip(centres, _MASSES, strict=True):
        if centre[0] == centre[0] and centre[1] == centre[1] and centre[2] == centre[2]:  # not NaN
            total += mass
            com = [c + mass * v for c, v in zip(com, centre, strict=True)]
    centre_of_mass = np.array([c / total for c in com] if total > 0 else [math.nan] * 3)
    return Analysis3D(angles, measures, segments, centre_of_mass)


def velocities(series: npt.ArrayLike, timestamps: npt.ArrayLike) -> FloatArray:
    """Time derivative along axis 0 (central differences, one-sided at the ends), e.g. m/s.

    ``series`` (T, ...) such as points (T, K, 3) or a centre of mass (T, 3); ``timestamps``
    (T,) strictly increasing seconds.  Fewer than two samples give zeros.
    """
    a = np.asarray(series, dtype=np.float64)
    t = np.asarray(timestamps, dtype=np.float64)
    if t.ndim != 1 or a.shape[:1] != t.shape:
        raise ValueError(f"series {a.shape} and timestamps {t.shape} must share their first axis")
    if t.size > 1 and np.any(np.diff(t) <= 0):
        raise ValueError("timestamps must be strictly increasing")
    return np.zeros_like(a) if t.size < 2 else np.asarray(np.gradient(a, t, axis=0))


def _scale(rows: list[list[float]]) -> float:
    """The person's size in metres: the mean of the two largest extents of the seen points.

    Plain floats (``rows`` from ``tolist``): the smoother runs per group, see ``OneEuroFilter``.
    """
    seen = [row for row in rows if all(map(math.isfinite, row))]
    if len(seen) < 2:
        return 1.0
    extents: list[float] = sorted(max(axis) - min(axis) for axis in zip(*seen, strict=True))
    return max(0.5 * (extents[-1] + extents[-2]), 0.1)


class TrajectorySmoother3D:
    """Causal smoothing of one person's 3D keypoints, frame after frame (live sessions).

    The 2D pipeline's One Euro filter (``smoothing.OneEuroFilter``) with its configured
    cutoffs; speeds are measured in person sizes per second, as in 2D, so ``beta`` means the
    same.  A keypoint that disappears (NaN) restarts its filter when it comes back.
    """

    def __init__(self, config: SmoothingConfig | None = None) -> None:
        self.config = config or SmoothingConfig()
        c = self.config
        self._filter = OneEuroFilter(c.min_cutoff, c.beta, c.d_cutoff)
        self._last_t: float | None = None

    def update(self, points: npt.ArrayLike, timestamp: float) -> FloatArray:
        p = np.asarray(points, dtype=np.float64)
        if self._last_t is not None and timestamp <= self._last_t:
            self._filter.reset()  # a restarted stream: start over rather than fail
        self._last_t = timestamp
        if not self.config.enabled:
            return p.copy()
        if p.ndim != 2:
            raise ValueError(f"points must be (K, 3), got {p.shape}")
        rows = p.tolist()
        flat = [v for row in rows for v in row]
        return np.array(self._filter.step(flat, timestamp, _scale(rows))).reshape(p.shape)


def butterworth_filter(
    series: npt.ArrayLike, fps: float, cutoff_hz: float = 6.0, order: int = 4
) -> FloatArray:
    """Zero-lag low-pass (forward-backward Butterworth) along axis 0 of (T, ...) trajectories.

    Pose2Sim's default for offline 3D (4th order, 6 Hz).  Each signal is filtered over its
    runs of finite samples; runs too short for the filter's padding are left as they are.
    """
    from scipy.signal import butter, filtfilt

    a = np.asarray(series, dtype=np.float64)
    if not 0 < cutoff_hz < fps / 2:
        raise ValueError(f"cutoff {cutoff_hz} Hz must lie between 0 and half the frame rate ({fps / 2} Hz)")
    # filtfilt applies the filter twice: halve the order so the result has ``order``.
    b, den = butter(max(order // 2, 1), cutoff_hz / (fps / 2))
    pad = 3 * max(len(b), len(den))
    flat = a.reshape(a.shape[0], -1)
    out = flat.copy()
    for j in range(flat.shape[1]):
        finite = np.isfinite(flat[:, j])
        edges = np.flatnonzero(np.diff(np.concatenate([[0], finite.astype(np.int8), [0]])))
        for start, stop in zip(edges[::2], edges[1::2], strict=True):
            if stop - start > pad:
                out[start:stop, j] = filtfilt(b, den, flat[start:stop, j])
    return out.reshape(a.shape)


def coefficient_of_variation(values: npt.ArrayLike, axis: int = 0) -> FloatArray:
    """std / mean along ``axis`` ignoring NaN (e.g. of a bone's length over a clip)."""
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.nanstd(v, axis=axis) / np.nanmean(v, axis=axis))
