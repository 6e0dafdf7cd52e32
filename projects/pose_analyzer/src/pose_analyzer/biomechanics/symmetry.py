"""Left/right symmetry of joint angles."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from pose_analyzer.biomechanics.angles import JOINT_ANGLES

FloatArray = npt.NDArray[np.floating[Any]]

PAIRED_JOINTS: tuple[str, ...] = tuple(sorted({name.split("_", 1)[1] for name in JOINT_ANGLES}))
# (output name, left angle, right angle) per paired joint.
_PAIR_NAMES = tuple((f"{joint}_symmetry", f"left_{joint}", f"right_{joint}") for joint in PAIRED_JOINTS)


def symmetry_index(left: FloatArray | float, right: FloatArray | float) -> FloatArray | float:
    """Robinson's symmetry index in percent: 100 * |L - R| / ((L + R) / 2).

    0 means perfectly symmetric.  NaN where either side is NaN or both are zero.
    (Robinson, Herzog and Nigg, J Manipulative Physiol Ther 1987.)
    """
    lv = np.asarray(left, dtype=np.float64)
    rv = np.asarray(right, dtype=np.float64)
    mean = 0.5 * (np.abs(lv) + np.abs(rv))
    with np.errstate(invalid="ignore", divide="ignore"):
        si = np.where(mean > 0, 100.0 * np.abs(lv - rv) / mean, np.nan)
    return float(si) if si.ndim == 0 else si


def symmetry_indices(angles: dict[str, float]) -> dict[str, float]:
    """Symmetry index of each left/right joint pair in ``angles``, keyed ``<joint>_symmetry``."""
    out = {}
    for name, left_name, right_name in _PAIR_NAMES:
        # Plain floats: this runs per person per frame, where numpy's call overhead dominates.
        left = abs(angles.get(left_name, math.nan))
        right = abs(angles.get(right_name, math.nan))
        mean = 0.5 * (left + right)
        out[name] = 100.0 * abs(left - right) / mean if mean > 0 else math.nan
    return out
