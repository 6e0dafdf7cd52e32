"""2D joint angles in degrees, following the one convention of docs/biomechanics.md.

Every joint angle is the unsigned interior angle at the middle keypoint of a triple,
in [0, 180], 180 meaning a straight limb.  Unsigned angles have no +-180 wrap, so a
joint moving smoothly can never appear to jump.  ``trunk_lean`` is the unsigned angle
between the hip-to-shoulder line and image "up" (0 = upright, 90 = horizontal);
``neck`` is the interior angle hips-shoulders-ears (midpoints; 180 = head in line
with the trunk).
A missing keypoint (NaN) gives a NaN angle.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from pose_analyzer.keypoints import Keypoint as K

FloatArray = npt.NDArray[np.floating[Any]]

# name -> (proximal, vertex, distal) keypoints; the angle is measured at the vertex.
JOINT_ANGLES: dict[str, tuple[K, K, K]] = {
    "left_elbow": (K.LEFT_SHOULDER, K.LEFT_ELBOW, K.LEFT_WRIST),
    "right_elbow": (K.RIGHT_SHOULDER, K.RIGHT_ELBOW, K.RIGHT_WRIST),
    "left_shoulder": (K.LEFT_HIP, K.LEFT_SHOULDER, K.LEFT_ELBOW),
    "right_shoulder": (K.RIGHT_HIP, K.RIGHT_SHOULDER, K.RIGHT_ELBOW),
    "left_hip": (K.LEFT_SHOULDER, K.LEFT_HIP, K.LEFT_KNEE),
    "right_hip": (K.RIGHT_SHOULDER, K.RIGHT_HIP, K.RIGHT_KNEE),
    "left_knee": (K.LEFT_HIP, K.LEFT_KNEE, K.LEFT_ANKLE),
    "right_knee": (K.RIGHT_HIP, K.RIGHT_KNEE, K.RIGHT_ANKLE),
    "left_ankle": (K.LEFT_KNEE, K.LEFT_ANKLE, K.LEFT_FOOT_INDEX),
    "right_ankle": (K.RIGHT_KNEE, K.RIGHT_ANKLE, K.RIGHT_FOOT_INDEX),
}
# Angles that involve midpoints of left/right pairs.
AXIAL_ANGLES = ("trunk_lean", "neck")
ANGLE_NAMES: tuple[str, ...] = (*JOINT_ANGLES, *AXIAL_ANGLES)

_PROX = np.array([t[0] for t in JOINT_ANGLES.values()], dtype=np.intp)
_VERT = np.array([t[1] for t in JOINT_ANGLES.values()], dtype=np.intp)
_DIST = np.array([t[2] for t in JOINT_ANGLES.values()], dtype=np.intp)


def interior_angle(a: FloatArray, b: FloatArray, c: FloatArray) -> FloatArray:
    """Unsigned angle ABC at vertex ``b`` in degrees, in [0, 180], over arrays of shape (..., 2).

    NaN when any point is NaN or when a segment has zero length.
    """
    u = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    v = np.asarray(c, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return _angle_between(u, v)


def _angle_between(u: FloatArray, v: FloatArray) -> FloatArray:
    # atan2(|cross|, dot) is accurate near 0 and 180 degrees, unlike arccos of the cosine.
    cross = np.abs(u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0])
    dot = (u * v).sum(axis=-1)
    degenerate = ((u * u).sum(axis=-1) == 0) | ((v * v).sum(axis=-1) == 0)
    out = np.degrees(np.arctan2(cross, dot))
    return np.where(degenerate, np.nan, out)


def _mid(xy: FloatArray, left: K, right: K) -> FloatArray:
    """Midpoint of a left/right pair; the one seen point when the other is missing (side views)."""
    a, b = xy[..., left, :], xy[..., right, :]
    return np.where(np.isnan(a), b, np.where(np.isnan(b), a, 0.5 * (a + b)))


def joint_angles_array(keypoints: FloatArray) -> FloatArray:
    """All angles of ``ANGLE_NAMES`` for keypoints of shape (..., NUM_KEYPOINTS, 2 or 3).

    Returns an array of shape (..., len(ANGLE_NAMES)) in degrees, NaN where unseen.
    """
    xy = np.asarray(keypoints, dtype=np.float64)[..., :2]
    joints = interior_angle(xy[..., _PROX, :], xy[..., _VERT, :], xy[..., _DIST, :])
    hips = _mid(xy, K.LEFT_HIP, K.RIGHT_HIP)
    shoulders = _mid(xy, K.LEFT_SHOULDER, K.RIGHT_SHOULDER)
    ears = _mid(xy, K.LEFT_EAR, K.RIGHT_EAR)
    trunk = shoulders - hips
    up = np.broadcast_to(np.array([0.0, -1.0]), trunk.shape)  # image y points down
    trunk_lean = _angle_between(trunk, up)
    neck = interior_angle(hips, shoulders, ears)
    return np.concatenate([joints, trunk_lean[..., None], neck[..., None]], axis=-1)


def joint_angles(keypoints: FloatArray) -> dict[str, float]:
    """Angles of one person's (NUM_KEYPOINTS, 3) keypoints by name, in degrees (NaN where unseen)."""
    values = joint_angles_array(keypoints)
    return dict(zip(ANGLE_NAMES, values.tolist(), strict=True))
