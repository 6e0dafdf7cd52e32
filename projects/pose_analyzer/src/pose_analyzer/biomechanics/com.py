"""Whole-body centre of mass from segment mass fractions.

Segment masses (fraction of body mass) and centre-of-mass positions (fraction of the
segment length from its proximal end) are Dempster's values as tabulated by Winter,
*Biomechanics and Motor Control of Human Movement*, 4th ed. (2009), Table 4.1.  Hands
are lumped with forearms ("forearm and hand", 0.022 at 0.682) because no backend sees
the knuckles; the head-and-neck centre sits at the ears.  Segments with an unseen end
are left out and the rest re-weighted, so a partly occluded person still gets an
estimate (NaN only when no segment is seen).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from pose_analyzer.keypoints import Keypoint as K

FloatArray = npt.NDArray[np.floating[Any]]

# (proximal, distal, mass fraction, COM fraction from proximal)
_SEGMENTS: tuple[tuple[K, K, float, float], ...] = (
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
)

_TRUNK_MASS = 0.497
TRUNK_COM_FRACTION = 0.50  # shoulder midpoint to hip midpoint ("greater trochanter")
_HEAD_MASS = 0.081

# The limb segments as arrays (proximal and distal keypoints, COM fraction from proximal), shared
# with ``person.py``, which computes the same centres fused with the angles.
SEGMENT_PROXIMAL = np.array([s[0] for s in _SEGMENTS], dtype=np.intp)
SEGMENT_DISTAL = np.array([s[1] for s in _SEGMENTS], dtype=np.intp)
_M = np.array([s[2] for s in _SEGMENTS], dtype=np.float64)
SEGMENT_COM_FRACTION = np.array([s[3] for s in _SEGMENTS], dtype=np.float64)
# Mass fractions of every centre ``center_of_mass`` weighs, in its order: the limb
# segments, the trunk, the head.
SEGMENT_MASSES = np.concatenate([_M, [_TRUNK_MASS, _HEAD_MASS]])


def _mid(xy: FloatArray, left: K, right: K) -> FloatArray:
    a, b = xy[..., left, :], xy[..., right, :]
    return np.where(np.isnan(a), b, np.where(np.isnan(b), a, 0.5 * (a + b)))


def center_of_mass(keypoints: FloatArray) -> FloatArray:
    """Centre of mass (x, y) in pixels of keypoints shaped (..., NUM_KEYPOINTS, 2 or 3).

    Returns shape (..., 2); NaN where no segment is seen.
    """
    xy = np.asarray(keypoints, dtype=np.float64)[..., :2]
    proximal, distal = xy[..., SEGMENT_PROXIMAL, :], xy[..., SEGMENT_DISTAL, :]
    limbs = proximal + SEGMENT_COM_FRACTION[:, None] * (distal - proximal)
    shoulders = _mid(xy, K.LEFT_SHOULDER, K.RIGHT_SHOULDER)
    hips = _mid(xy, K.LEFT_HIP, K.RIGHT_HIP)
    trunk = shoulders + TRUNK_COM_FRACTION * (hips - shoulders)
    head = _mid(xy, K.LEFT_EAR, K.RIGHT_EAR)
    centres = np.concatenate([limbs, trunk[..., None, :], head[..., None, :]], axis=-2)
    seen = ~np.isnan(centres).any(axis=-1)
    w = np.where(seen, SEGMENT_MASSES, 0.0)
    total = w.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore"):
        com = (np.nan_to_num(centres) * w[..., None]).sum(axis=-2) / total
    return np.asarray(np.where(total > 0, com, np.nan))
