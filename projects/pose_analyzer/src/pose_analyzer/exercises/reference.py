"""Compare a repetition with a recorded reference repetition by dynamic time warping.

DTW aligns the two joint-angle series in time, so a rep done slower or faster than
the reference, or with a pause, is compared pose by pose.  Each series is first
resampled to at most ``MAX_SAMPLES`` points (bounding the O(n*m) cost) and the
distance is the mean per-step Euclidean angle difference along the optimal path, in
degrees: independent of the reps' lengths.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.floating[Any]]

MAX_SAMPLES = 100


def _as_2d(series: FloatArray) -> FloatArray:
    a = np.asarray(series, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] < 2:
        raise ValueError(f"a series must be (T,) or (T, J) with T >= 2, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("a series must not contain NaN or inf (interpolate gaps first)")
    return a


def resample(series: FloatArray, length: int) -> FloatArray:
    """Linearly resample a (T, J) series to (length, J)."""
    a = _as_2d(series)
    src = np.linspace(0.0, 1.0, a.shape[0])
    dst = np.linspace(0.0, 1.0, length)
    return np.stack([np.interp(dst, src, a[:, j]) for j in range(a.shape[1])], axis=1)


def dtw_distance(a: FloatArray, b: FloatArray) -> float:
    """Mean per-step distance (degrees) along the optimal DTW alignment of two series.

    ``a`` and ``b`` are (T, J) or (T,) angle series with the same J.  The recursion is
    evaluated one anti-diagonal at a time, vectorised in numpy.

    Raises:
        ValueError: mismatched joint counts, fewer than two samples, or non-finite values.
    """
    x, y = _as_2d(a), _as_2d(b)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"series have {x.shape[1]} and {y.shape[1]} angles")
    if x.shape[0] > MAX_SAMPLES:
        x = resample(x, MAX_SAMPLES)
    if y.shape[0] > MAX_SAMPLES:
        y = resample(y, MAX_SAMPLES)
    n, m = x.shape[0], y.shape[0]
    cost = np.linalg.norm(x[:, None, :] - y[None, :, :], axis=2)
    acc = np.full((n + 1, m + 1), np.inf)
    steps = np.zeros((n + 1, m + 1))
    acc[0, 0] = 0.0
    for k in range(2, n + m + 1):  # cells (i, j) with i + j == k, 1-based
        i = np.arange(max(1, k - m), min(n, k - 1) + 1)
        j = k - i
        prev = np.stack([acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1]])
        prev_steps = np.stack([steps[i - 1, j - 1], steps[i - 1, j], steps[i, j - 1]])
        best = prev.argmin(axis=0)
        acc[i, j] = cost[i - 1, j - 1] + prev[best, np.arange(i.size)]
        steps[i, j] = prev_steps[best, np.arange(i.size)] + 1
    return float(acc[n, m] / steps[n, m])


@dataclass(frozen=True, slots=True)
class ReferenceMotion:
    """A recorded reference rep: angle names and their (T, J) series in degrees.

    ``tolerance_deg`` sets how strict the score is: a mean aligned difference of
    ``tolerance_deg`` scores about 37 (100 * e^-1), half of it about 61.
    """

    angles: tuple[str, ...]
    series: FloatArray
    tolerance_deg: float = 15.0

    def __post_init__(self) -> None:
        s = _as_2d(self.series)
        if s.shape[1] != len(self.angles):
            raise ValueError(f"series has {s.shape[1]} columns for {len(self.angles)} angle names")
        if self.tolerance_deg <= 0:
            raise ValueError("tolerance_deg must be positive")
        object.__setattr__(self, "series", s)

    def score(self, series: FloatArray) -> float:
        """Similarity 0-100 of a rep's (T, J) angle series (columns in ``angles`` order) to this reference."""
        return round(100.0 * float(np.exp(-dtw_distance(self.series, series) / self.tolerance_deg)), 1)

    def save(self, path: str | Path) -> None:
        """Write the reference as .npz."""
        np.savez(path, angles=np.array(self.angles), series=self.series, tolerance_deg=self.tolerance_deg)

    @classmethod
    def load(cls, path: str | Path) -> ReferenceMotion:
        """Read a reference written by ``save``. Raises ValueError on a malformed file."""
        with np.load(path, allow_pickle=False) as data:
            try:
                return cls(
                    angles=tuple(str(a) for a in data["angles"]),
                    series=data["series"],
                    tolerance_deg=float(data["tolerance_deg"]),
                )
            except KeyError as exc:
                raise ValueError(f"{path}: not a reference motion file (missing {exc})") from exc
