"""Posture measures from one person's keypoints, for the exercises' preconditions.

Joint angles say how a limb is bent, not how the body is placed: elbows at 70 degrees
are the bottom of a push-up only if the body is near horizontal.  These measures say
where the body is, as ratios of pixel distances or angles, so they do not depend on
the camera distance:

- ``trunk_incline``: the angle of the hip-to-shoulder line to the image horizontal, in
  degrees (0 = lying or in a plank, 90 = upright).  The same line as ``trunk_lean``
  (``trunk_incline = |90 - trunk_lean|`` on the same keypoints) but read from the
  horizontal, which is how a plank is described.
- ``hips_below_shoulders``: how far the hip midpoint lies below the shoulder midpoint,
  in trunk lengths (1 = standing upright, 0 = level, < 0 = hips above shoulders).
- ``body_line``: the angle at the hips between the shoulders and the ankles (midpoints
  of the left/right pairs), 180 = shoulders, hips and ankles in one straight line (a
  plank).  Measured on midpoints and without the knee, so it reads the same with
  MediaPipe and YOLO: in a side view YOLO places the two sides' hips and knees
  differently (its shoulder-hip-knee angle on the shared push-up clip reads 15-25 deg
  more bent than MediaPipe's on the same frames), but the midpoint line agrees within
  about 6 deg (docs/validation.md).
- ``left_wrist_reach`` / ``right_wrist_reach``: the shoulder-to-wrist distance over the
  arm's length (upper arm + forearm): near 1 with the arm straight, small in a guard.
  A punch drives it up; a wrist moving towards the shoulder drives it down.

Only keypoints every backend reports (the 17 COCO points) are used, so MediaPipe and
YOLO measure the same thing.  A missing keypoint gives NaN.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from pose_analyzer.keypoints import Keypoint as K

FloatArray = npt.NDArray[np.floating[Any]]

POSTURE_NAMES: tuple[str, ...] = (
    "trunk_incline",
    "hips_below_shoulders",
    "body_line",
    "left_wrist_reach",
    "right_wrist_reach",
)
# Sided names resolved to the side the counter follows ("wrist_reach" -> "left_wrist_reach").
SIDED_POSTURE: tuple[str, ...] = ("wrist_reach",)

_LS, _RS, _LH, _RH = int(K.LEFT_SHOULDER), int(K.RIGHT_SHOULDER), int(K.LEFT_HIP), int(K.RIGHT_HIP)
_LA, _RA = int(K.LEFT_ANKLE), int(K.RIGHT_ANKLE)
# (measure, shoulder, elbow, wrist) per side.
_ARMS = (
    ("left_wrist_reach", int(K.LEFT_SHOULDER), int(K.LEFT_ELBOW), int(K.LEFT_WRIST)),
    ("right_wrist_reach", int(K.RIGHT_SHOULDER), int(K.RIGHT_ELBOW), int(K.RIGHT_WRIST)),
)
# Every keypoint a measure reads (a confidence gate looks at these only).
_USED = tuple(sorted({_LS, _RS, _LH, _RH, _LA, _RA, *(i for arm in _ARMS for i in arm[1:])}))


def _mid(x: list[float], y: list[float], a: int, b: int) -> tuple[float, float]:
    """Midpoint of a left/right pair, or the one side that is seen (axis by axis); NaN when an
    axis has neither (``v != v``: v is NaN)."""
    xa, xb, ya, yb = x[a], x[b], y[a], y[b]
    mx = xb if xa != xa else xa if xb != xb else (xa + xb) / 2
    my = yb if ya != ya else ya if yb != yb else (ya + yb) / 2
    if mx != mx or my != my:
        return math.nan, math.nan
    return mx, my


def posture_measures(keypoints: FloatArray, min_confidence: float = 0.0) -> dict[str, float]:
    """The ``POSTURE_NAMES`` of one person's (N, 3) keypoints (pixels, confidence); NaN where unseen.

    Keypoints with a confidence at or below ``min_confidence`` count as unseen.
    """
    # Plain floats from one ``tolist``: per person per frame, numpy's call overhead would cost
    # more than the arithmetic.
    columns = np.asarray(keypoints).T.tolist()
    return posture_columns(columns[0], columns[1], columns[2] if len(columns) > 2 else None, min_confidence)


def posture_columns(
    x: list[float],
    y: list[float],
    confidence: list[float] | None = None,
    min_confidence: float = 0.0,
    names: frozenset[str] | None = None,
) -> dict[str, float]:
    """``posture_measures`` of one person's keypoint columns as plain lists (the engine's path).

    ``names``: only these measures (the ones a rep counter reads, ``RepCounter.posture_names``);
    None: all of ``POSTURE_NAMES``.
    """
    if confidence is not None:
        # Only the points measured here are masked (copies made only when one is unseen).
        masked = False
        for i in _USED:
            if confidence[i] <= min_confidence:  # a NaN confidence is kept, as before
                if not masked:
                    x, y, masked = list(x), list(y), True
                x[i] = y[i] = math.nan
    out = {}
    trunk_names = names is None or "trunk_incline" in names or "hips_below_shoulders" in names
    line = names is None or "body_line" in names
    if trunk_names or line:
        sx, sy = _mid(x, y, _LS, _RS)
        hx, hy = _mid(x, y, _LH, _RH)
    if trunk_names:
        trunk = math.hypot(sx - hx, sy - hy)
        if trunk > 1e-6:
            out["trunk_incline"] = math.degrees(math.atan2(abs(hy - sy), abs(hx - sx)))
            out["hips_below_shoulders"] = (hy - sy) / trunk
        else:
            out["trunk_incline"] = out["hips_below_shoulders"] = math.nan
    if line:
        ax, ay = _mid(x, y, _LA, _RA)
        ux, uy = sx - hx, sy - hy
        vx, vy = ax - hx, ay - hy
        norms = math.hypot(ux, uy) * math.hypot(vx, vy)
        out["body_line"] = (
            math.degrees(math.acos(max(-1.0, min(1.0, (ux * vx + uy * vy) / norms))))
            if norms > 1e-6
            else math.nan
        )
    for name, s, e, w in _ARMS:
        if names is None or name in names:
            arm = math.hypot(x[s] - x[e], y[s] - y[e]) + math.hypot(x[e] - x[w], y[e] - y[w])
            reach = math.hypot(x[s] - x[w], y[s] - y[w])
            out[name] = reach / arm if arm > 1e-6 else math.nan
    return out
