"""Dimensionless body measures that form rules need beside joint angles.

Each is a ratio of pixel distances, so it does not depend on the camera distance:

- ``knee_width_ratio``: horizontal knee separation / horizontal ankle separation
  (front view; under about 0.8 the knees cave in: knee valgus).
- ``stance_width_ratio``: horizontal ankle separation / shoulder width (front view).
- ``left_ankle_height`` / ``right_ankle_height``: how far the ankle is above the hip,
  in leg lengths (hip to knee to ankle); 0 = at hip height, -1 = ankle straight below
  the hip, > 0 above the hip (kick height).
- ``hip_height``: how far the hip midpoint is above the ankle midpoint in leg lengths.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from pose_analyzer.keypoints import Keypoint as K

FloatArray = npt.NDArray[np.floating[Any]]

_LS, _RS, _LH, _RH = int(K.LEFT_SHOULDER), int(K.RIGHT_SHOULDER), int(K.LEFT_HIP), int(K.RIGHT_HIP)
_LK, _RK, _LA, _RA = int(K.LEFT_KNEE), int(K.RIGHT_KNEE), int(K.LEFT_ANKLE), int(K.RIGHT_ANKLE)

MEASURE_NAMES: tuple[str, ...] = (
    "knee_width_ratio",
    "stance_width_ratio",
    "left_ankle_height",
    "right_ankle_height",
    "hip_height",
)


def _ratio(num: float, den: float) -> float:
    return num / den if den > 1e-6 else math.nan


def _nanmean(a: float, b: float) -> float:
    if math.isnan(a):
        return b
    return a if math.isnan(b) else 0.5 * (a + b)


def body_measures(keypoints: FloatArray) -> dict[str, float]:
    """The ``MEASURE_NAMES`` of one person's (NUM_KEYPOINTS, 2 or 3) keypoints; NaN where unseen."""
    x, y = np.asarray(keypoints, dtype=np.float64)[:, :2].T.tolist()
    return body_measures_xy(x, y)


def body_measures_xy(x: list[float], y: list[float]) -> dict[str, float]:
    """``body_measures`` of one person's keypoint coordinates as plain lists (the engine's path)."""
    # Plain floats on a handful of named points, inline: per person per frame, numpy's call
    # overhead (and each further function read back into a cold cache) costs more than the arithmetic.
    knee_w = abs(x[_LK] - x[_RK])
    ankle_w = abs(x[_LA] - x[_RA])
    shoulder_w = abs(x[_LS] - x[_RS])
    left_leg = math.hypot(x[_LH] - x[_LK], y[_LH] - y[_LK]) + math.hypot(x[_LK] - x[_LA], y[_LK] - y[_LA])
    right_leg = math.hypot(x[_RH] - x[_RK], y[_RH] - y[_RK]) + math.hypot(x[_RK] - x[_RA], y[_RK] - y[_RA])
    # The longer leg seen (``max`` of the seen ones: NaN is unequal to itself).
    if left_leg != left_leg:
        leg = right_leg
    elif right_leg != right_leg:
        leg = left_leg
    else:
        leg = max(left_leg, right_leg)
    hip_y = _nanmean(y[_LH], y[_RH])
    ankle_y = _nanmean(y[_LA], y[_RA])
    return {
        "knee_width_ratio": _ratio(knee_w, ankle_w),
        "stance_width_ratio": _ratio(ankle_w, shoulder_w),
        "left_ankle_height": _ratio(y[_LH] - y[_LA], leg),
        "right_ankle_height": _ratio(y[_RH] - y[_RA], leg),
        "hip_height": _ratio(ankle_y - hip_y, leg),
    }
