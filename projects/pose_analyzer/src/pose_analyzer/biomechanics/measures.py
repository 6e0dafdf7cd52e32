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
    # Plain floats on a handful of named points: per person per frame, numpy's call
    # overhead would cost more than the arithmetic.
    knee_w = abs(x[K.LEFT_KNEE] - x[K.RIGHT_KNEE])
    ankle_w = abs(x[K.LEFT_ANKLE] - x[K.RIGHT_ANKLE])
    shoulder_w = abs(x[K.LEFT_SHOULDER] - x[K.RIGHT_SHOULDER])

    def dist(a: K, b: K) -> float:
        return math.hypot(x[a] - x[b], y[a] - y[b])

    legs = [
        dist(K.LEFT_HIP, K.LEFT_KNEE) + dist(K.LEFT_KNEE, K.LEFT_ANKLE),
        dist(K.RIGHT_HIP, K.RIGHT_KNEE) + dist(K.RIGHT_KNEE, K.RIGHT_ANKLE),
    ]
    seen = [v for v in legs if not math.isnan(v)]
    leg = max(seen) if seen else math.nan
    hip_y = _nanmean(y[K.LEFT_HIP], y[K.RIGHT_HIP])
    ankle_y = _nanmean(y[K.LEFT_ANKLE], y[K.RIGHT_ANKLE])
    return {
        "knee_width_ratio": _ratio(knee_w, ankle_w),
        "stance_width_ratio": _ratio(ankle_w, shoulder_w),
        "left_ankle_height": _ratio(y[K.LEFT_HIP] - y[K.LEFT_ANKLE], leg),
        "right_ankle_height": _ratio(y[K.RIGHT_HIP] - y[K.RIGHT_ANKLE], leg),
        "hip_height": _ratio(ankle_y - hip_y, leg),
    }
