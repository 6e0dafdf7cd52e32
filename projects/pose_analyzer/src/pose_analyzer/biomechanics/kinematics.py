"""Angular velocity, acceleration and range of motion from angle series and timestamps."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.floating[Any]]


def _check(angles: FloatArray, timestamps: FloatArray) -> tuple[FloatArray, FloatArray]:
    a = np.asarray(angles, dtype=np.float64)
    t = np.asarray(timestamps, dtype=np.float64)
    if a.ndim == 0 or a.shape[0] != t.shape[0] or t.ndim != 1:
        raise ValueError(f"angles {a.shape} and timestamps {t.shape} must share their first axis")
    if t.size > 1 and np.any(np.diff(t) <= 0):
        raise ValueError("timestamps must be strictly increasing")
    return a, t


def angular_velocity(angles: FloatArray, timestamps: FloatArray) -> FloatArray:
    """d(angle)/dt in degrees per second along axis 0 (central differences, one-sided at the ends).

    ``angles`` is (T,) or (T, J); ``timestamps`` (T,) seconds.  Fewer than two samples
    give zeros.  Raises ValueError on mismatched shapes or non-increasing timestamps.
    """
    a, t = _check(angles, timestamps)
    if t.size < 2:
        return np.zeros_like(a)
    return np.asarray(np.gradient(a, t, axis=0))


def angular_acceleration(angles: FloatArray, timestamps: FloatArray) -> FloatArray:
    """d2(angle)/dt2 in degrees per second squared, same shapes and errors as ``angular_velocity``."""
    _, t = _check(angles, timestamps)
    return angular_velocity(angular_velocity(angles, t), t)


def range_of_motion(angles: FloatArray, axis: int = 0) -> FloatArray | float:
    """Max minus min over ``axis`` ignoring NaN, in degrees; NaN where nothing was seen."""
    a = np.asarray(angles, dtype=np.float64)
    finite = np.isfinite(a)
    hi = np.where(finite, a, -np.inf).max(axis=axis)
    lo = np.where(finite, a, np.inf).min(axis=axis)
    rom = np.where(finite.any(axis=axis), hi - lo, np.nan)
    return float(rom) if rom.ndim == 0 else rom
