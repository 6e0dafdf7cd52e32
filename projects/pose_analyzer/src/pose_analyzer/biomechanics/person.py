"""Joint angles and centre of mass of ONE person in one pass: the engine's per-frame path.

``joint_angles_array`` and ``center_of_mass`` accept any batch shape, at the price of
a few dozen small numpy calls each; per person per frame that overhead, not the
arithmetic, is what the engine spends its time on.  Here both come from one table of
points (the keypoints, three left/right midpoints and two constant points) in a
handful of calls.  The arithmetic is the same operation for operation, so the results
equal those of the two functions for finite keypoints
(tests/unit/pose_analyzer/test_perf_equivalence.py checks it).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from pose_analyzer.biomechanics.angles import JOINT_ANGLES
from pose_analyzer.biomechanics.com import (
    SEGMENT_COM_FRACTION,
    SEGMENT_DISTAL,
    SEGMENT_MASSES,
    SEGMENT_PROXIMAL,
    TRUNK_COM_FRACTION,
)
from pose_analyzer.keypoints import NUM_KEYPOINTS
from pose_analyzer.keypoints import Keypoint as K

FloatArray = npt.NDArray[np.floating[Any]]

# Rows of the point table after the keypoints: midpoints of three left/right pairs,
# then image "up" and the origin, so that "up" is the difference of two rows, exactly.
_LEFT = np.array([K.LEFT_HIP, K.LEFT_SHOULDER, K.LEFT_EAR], dtype=np.intp)
_RIGHT = np.array([K.RIGHT_HIP, K.RIGHT_SHOULDER, K.RIGHT_EAR], dtype=np.intp)
_HIPS, _SHOULDERS, _EARS, _UP, _ORIGIN = range(NUM_KEYPOINTS, NUM_KEYPOINTS + 5)
_CONSTANT_POINTS = np.array([[0.0, -1.0], [0.0, 0.0]])  # image y points down

# Angle i lies between u = table[_U_FROM[i]] - table[_U_TO[i]] and v likewise, in
# ANGLE_NAMES order: the joints (both vectors from the vertex), then trunk_lean (trunk
# against "up") and neck (hips-shoulders-ears).
_TRIPLES = tuple(JOINT_ANGLES.values())
_U_FROM = np.array([*(t[0] for t in _TRIPLES), _SHOULDERS, _HIPS], dtype=np.intp)
_U_TO = np.array([*(t[1] for t in _TRIPLES), _HIPS, _SHOULDERS], dtype=np.intp)
_V_FROM = np.array([*(t[2] for t in _TRIPLES), _UP, _EARS], dtype=np.intp)
_V_TO = np.array([*(t[1] for t in _TRIPLES), _ORIGIN, _SHOULDERS], dtype=np.intp)
_ANGLE_ENDS = tuple(
    (int(a), int(b), int(c), int(d)) for a, b, c, d in zip(_U_FROM, _U_TO, _V_FROM, _V_TO, strict=True)
)

# Segment centres as in com.py: proximal + fraction * (distal - proximal) for the limbs
# and the trunk (shoulder midpoint towards hip midpoint); the head's is the ear midpoint.
_PROXIMAL = np.array([*SEGMENT_PROXIMAL, _SHOULDERS], dtype=np.intp)
_DISTAL = np.array([*SEGMENT_DISTAL, _HIPS], dtype=np.intp)
_FRACTION = np.array([*SEGMENT_COM_FRACTION, TRUNK_COM_FRACTION], dtype=np.float64)[:, None]


def person_angles_and_com(keypoints: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Angles (ANGLE_NAMES order, degrees) and centre of mass (x, y) of (NUM_KEYPOINTS, 2 or 3) keypoints.

    Equal to ``joint_angles_array(keypoints)`` and ``center_of_mass(keypoints)`` for
    finite input: NaN angles where unseen, a NaN centre when no segment is seen.

    Raises:
        ValueError: keypoints not shaped (NUM_KEYPOINTS, 2 or 3).
    """
    points = np.asarray(keypoints, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] != NUM_KEYPOINTS or points.shape[1] not in (2, 3):
        raise ValueError(f"keypoints must be ({NUM_KEYPOINTS}, 2 or 3), got {points.shape}")
    xy = points[:, :2]
    left, right = xy[_LEFT], xy[_RIGHT]
    # The midpoint of a pair, or its one seen point (side views).
    mids = np.where(np.isnan(left), right, np.where(np.isnan(right), left, 0.5 * (left + right)))
    table = np.concatenate([xy, mids, _CONSTANT_POINTS])
    rows = table.tolist()
    return np.array([_angle(rows, *ends) for ends in _ANGLE_ENDS]), _center_of_mass(table)


def _angle(rows: list[list[float]], u_from: int, u_to: int, v_from: int, v_to: int) -> float:
    """As angles._angle_between, in plain floats (12 angles: cheaper than numpy's call overhead).

    atan2(|cross|, dot) in degrees; NaN when a vector has zero length.  math.atan2 and
    math.degrees round as np.arctan2 and np.degrees do (libm, and x * (180 / pi)).
    """
    (ax, ay), (bx, by), (cx, cy), (dx, dy) = rows[u_from], rows[u_to], rows[v_from], rows[v_to]
    ux, uy, vx, vy = ax - bx, ay - by, cx - dx, cy - dy
    if ux * ux + uy * uy == 0 or vx * vx + vy * vy == 0:
        return math.nan
    return math.degrees(math.atan2(abs(ux * vy - uy * vx), ux * vx + uy * vy))


def _center_of_mass(table: FloatArray) -> FloatArray:
    proximal = table[_PROXIMAL]
    segments = proximal + _FRACTION * (table[_DISTAL] - proximal)
    centres = np.concatenate([segments, table[_EARS : _EARS + 1]])
    unseen = np.isnan(centres)
    weights = np.where(unseen[:, 0] | unseen[:, 1], 0.0, SEGMENT_MASSES)
    total = weights.sum(axis=-1, keepdims=True)
    if not total[0] > 0:
        return np.full(2, np.nan)
    # Unseen centres weigh 0; zeroing their NaN keeps them out of the sum.
    return np.asarray((np.where(unseen, 0.0, centres) * weights[:, None]).sum(axis=-2) / total)
