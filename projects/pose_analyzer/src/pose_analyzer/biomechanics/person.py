"""Joint angles and centre of mass of ONE person in one pass: the engine's per-frame path.

``joint_angles_array`` and ``center_of_mass`` accept any batch shape, at the price of
a few dozen small numpy calls each; per person per frame that overhead, not the
arithmetic, is what the engine spends its time on (and, between two inferences that
flush the CPU's caches, each numpy call costs several times its warm cost).  Here both
come from one list of points (the keypoints, three left/right midpoints and two
constant points) in plain floats, from one ``tolist``.  The formulas are those of the two
functions, in another operation order, so the results equal theirs within rounding
(tests/unit/pose_analyzer/test_perf_equivalence.py states the bound and checks it).
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
# then image "up" (0, -1: image y points down) and the origin (0, 0), so that "up" is the
# difference of two rows, exactly.
_PAIRS = (
    (int(K.LEFT_HIP), int(K.RIGHT_HIP)),
    (int(K.LEFT_SHOULDER), int(K.RIGHT_SHOULDER)),
    (int(K.LEFT_EAR), int(K.RIGHT_EAR)),
)
_HIPS, _SHOULDERS, _EARS, _UP, _ORIGIN = range(NUM_KEYPOINTS, NUM_KEYPOINTS + 5)

# Angle i lies between u = table[u_from] - table[u_to] and v = table[v_from] - table[v_to],
# in ANGLE_NAMES order: the joints (both vectors from the vertex), then trunk_lean (trunk
# against "up") and neck (hips-shoulders-ears).
_ANGLE_ENDS: tuple[tuple[int, int, int, int], ...] = (
    *((int(a), int(b), int(c), int(b)) for a, b, c in JOINT_ANGLES.values()),
    (_SHOULDERS, _HIPS, _UP, _ORIGIN),
    (_HIPS, _SHOULDERS, _EARS, _SHOULDERS),
)

# Segment centres as in com.py: proximal + fraction * (distal - proximal), weighted by the
# segment's mass, for the limbs and the trunk (shoulder midpoint towards hip midpoint); the
# head's centre is the ear midpoint (fraction 0 of a segment from it to itself).
_SEGMENTS: tuple[tuple[int, int, float, float], ...] = (
    *(
        (int(p), int(d), float(f), float(m))
        for p, d, f, m in zip(
            SEGMENT_PROXIMAL, SEGMENT_DISTAL, SEGMENT_COM_FRACTION, SEGMENT_MASSES[:-2], strict=True
        )
    ),
    (_SHOULDERS, _HIPS, TRUNK_COM_FRACTION, float(SEGMENT_MASSES[-2])),
    (_EARS, _EARS, 0.0, float(SEGMENT_MASSES[-1])),
)

Point = tuple[float, float]


def person_angles_and_com(keypoints: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Angles (ANGLE_NAMES order, degrees) and centre of mass (x, y) of (NUM_KEYPOINTS, 2 or 3) keypoints.

    Equal to ``joint_angles_array(keypoints)`` and ``center_of_mass(keypoints)`` for
    finite input (within rounding): NaN angles where unseen, a NaN centre when no segment
    is seen.

    Raises:
        ValueError: keypoints not shaped (NUM_KEYPOINTS, 2 or 3).
    """
    points = np.asarray(keypoints)
    if points.ndim != 2 or points.shape[0] != NUM_KEYPOINTS or points.shape[1] not in (2, 3):
        raise ValueError(f"keypoints must be ({NUM_KEYPOINTS}, 2 or 3), got {points.shape}")
    x, y = points[:, :2].T.tolist()
    angles, com = angles_and_com(x, y)
    return np.array(angles), np.array(com if com is not None else (math.nan, math.nan))


def angles_and_com(x: list[float], y: list[float]) -> tuple[list[float], Point | None]:
    """``person_angles_and_com`` of one person's NUM_KEYPOINTS coordinates as plain lists
    (``keypoints.T.tolist()``): the angles as a list, the centre None when no segment is seen.

    One function, its loops written out: per person per frame, between two inferences that
    evict the CPU's caches, every further code object read back costs more than the arithmetic.
    """
    # The point table: the keypoints, the midpoints of three pairs (or their one seen point,
    # axis by axis: a side view; ``v != v`` is NaN), then image "up" and the origin.
    mid_x, mid_y = [], []
    for a, b in _PAIRS:
        ax, bx, ay, by = x[a], x[b], y[a], y[b]
        mid_x.append(bx if ax != ax else ax if bx != bx else 0.5 * (ax + bx))
        mid_y.append(by if ay != ay else ay if by != by else 0.5 * (ay + by))
    xs, ys = [*x, *mid_x, 0.0, 0.0], [*y, *mid_y, -1.0, 0.0]
    # As angles._angle_between: atan2(|cross|, dot) in degrees, NaN when a vector has zero length.
    # math.atan2 and math.degrees round as np.arctan2 and np.degrees do (libm, and x * (180 / pi)).
    angles = []
    for u_from, u_to, v_from, v_to in _ANGLE_ENDS:
        ux, uy = xs[u_from] - xs[u_to], ys[u_from] - ys[u_to]
        vx, vy = xs[v_from] - xs[v_to], ys[v_from] - ys[v_to]
        if ux * ux + uy * uy == 0 or vx * vx + vy * vy == 0:
            angles.append(math.nan)
        else:
            angles.append(math.degrees(math.atan2(abs(ux * vy - uy * vx), ux * vx + uy * vy)))
    # The mass-weighted mean of the seen segment centres (both coordinates seen).
    sum_x = sum_y = total = 0.0
    for proximal, distal, fraction, mass in _SEGMENTS:
        px, py = xs[proximal], ys[proximal]
        cx = px + fraction * (xs[distal] - px)
        cy = py + fraction * (ys[distal] - py)
        if cx == cx and cy == cy:
            sum_x += cx * mass
            sum_y += cy * mass
            total += mass
    return angles, ((sum_x / total, sum_y / total) if total > 0 else None)
