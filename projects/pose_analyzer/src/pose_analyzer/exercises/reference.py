"""Compare a repetition with a recorded reference repetition by dynamic time warping.

DTW aligns the two joint-angle series in time, so a rep done slower or faster than
the reference, or with a pause, is compared pose by pose.  Each series is first
resampled to at most ``MAX_SAMPLES`` points (bounding the O(n*m) cost) and the
distance is the mean per-step Euclidean angle difference along the optimal path, in
degrees: independent of the reps' lengths.

``ReferenceMotion.compare`` gives the coach's feedback: the score, the mean aligned
difference per angle, and the worst phase of the reference (on the way to its peak, at
the peak, on the way back) with its mean difference.
"""

from __future__ import annotations

import json
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


def _prepare(a: FloatArray, b: FloatArray) -> tuple[FloatArray, FloatArray]:
    x, y = _as_2d(a), _as_2d(b)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"series have {x.shape[1]} and {y.shape[1]} angles")
    if x.shape[0] > MAX_SAMPLES:
        x = resample(x, MAX_SAMPLES)
    if y.shape[0] > MAX_SAMPLES:
        y = resample(y, MAX_SAMPLES)
    return x, y


def _accumulate(x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Accumulated cost and path length of every DTW cell, one anti-diagonal at a time (numpy)."""
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
    return acc, steps


def dtw_distance(a: FloatArray, b: FloatArray) -> float:
    """Mean per-step distance (degrees) along the optimal DTW alignment of two series.

    ``a`` and ``b`` are (T, J) or (T,) angle series with the same J.  The recursion is
    evaluated one anti-diagonal at a time, vectorised in numpy.

    Raises:
        ValueError: mismatched joint counts, fewer than two samples, or non-finite values.
    """
    x, y = _prepare(a, b)
    acc, steps = _accumulate(x, y)
    n, m = x.shape[0], y.shape[0]
    return float(acc[n, m] / steps[n, m])


def dtw_path(a: FloatArray, b: FloatArray) -> tuple[FloatArray, FloatArray, list[tuple[int, int]]]:
    """The two series as compared (resampled to at most ``MAX_SAMPLES``) and the optimal
    alignment between them: (i, j) index pairs from (0, 0) to the last samples.

    Raises:
        ValueError: as ``dtw_distance``.
    """
    x, y = _prepare(a, b)
    acc, _ = _accumulate(x, y)
    i, j = x.shape[0], y.shape[0]
    path = [(i - 1, j - 1)]
    while (i, j) != (1, 1):
        moves = ((i - 1, j - 1), (i - 1, j), (i, j - 1))
        i, j = min(moves, key=lambda c: acc[c])
        path.append((i - 1, j - 1))
    path.reverse()
    return x, y, path


PHASES = ("to_peak", "peak", "from_peak")
PHASE_MESSAGES = {
    "to_peak": "on the way into the movement",
    "peak": "at the peak of the movement",
    "from_peak": "on the way back",
}
# The peak phase spans this fraction of the reference on each side of its peak sample.
_PEAK_HALF_WIDTH = 0.1


@dataclass(frozen=True, slots=True)
class ReferenceComparison:
    """A rep against a reference: ``score`` 0-100, ``distance_deg`` the mean aligned difference,
    ``per_angle_deg`` the mean absolute aligned difference of each angle, ``worst_phase`` the
    phase of the reference (``PHASES``) where the rep differed most, by ``worst_phase_deg``."""

    score: float
    distance_deg: float
    per_angle_deg: dict[str, float]
    worst_phase: str
    worst_phase_deg: float

    @property
    def message(self) -> str:
        """The feedback in words: the angle that differed most and where."""
        angle, deviation = max(self.per_angle_deg.items(), key=lambda item: item[1])
        return (
            f"{self.score:.0f}% like the reference; largest difference {angle.replace('_', ' ')} "
            f"({deviation:.0f} deg on average), worst {PHASE_MESSAGES[self.worst_phase]} "
            f"({self.worst_phase_deg:.0f} deg)"
        )


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
        return self._score_of(dtw_distance(self.series, series))

    def _score_of(self, distance: float) -> float:
        return round(100.0 * float(np.exp(-distance / self.tolerance_deg)), 1)

    def phase_of(self, index: int, length: int) -> str:
        """The phase of sample ``index`` of this reference resampled to ``length`` samples.

        The peak is the sample farthest (Euclidean, all angles) from the first one; the peak
        phase is the span of ``_PEAK_HALF_WIDTH`` of the rep on either side of it.
        """
        peak = float(np.linalg.norm(self.series - self.series[0], axis=1).argmax()) / (len(self.series) - 1)
        where = index / max(length - 1, 1)
        if abs(where - peak) <= _PEAK_HALF_WIDTH:
            return "peak"
        return "to_peak" if where < peak else "from_peak"

    def compare(self, series: FloatArray) -> ReferenceComparison:
        """Score a rep's (T, J) angle series against this reference, with per-angle and per-phase
        differences along the DTW alignment.

        Raises:
            ValueError: a series of another width, under two samples, or with NaN/inf.
        """
        ref, rep, path = dtw_path(self.series, series)
        rows, cols = np.array([p[0] for p in path]), np.array([p[1] for p in path])
        diff = np.abs(ref[rows] - rep[cols])
        step = np.linalg.norm(ref[rows] - rep[cols], axis=1)
        phases = np.array([self.phase_of(int(i), ref.shape[0]) for i in rows])
        by_phase = {ph: float(step[phases == ph].mean()) for ph in PHASES if (phases == ph).any()}
        worst = max(by_phase, key=by_phase.__getitem__)
        distance = float(step.mean())
        return ReferenceComparison(
            score=self._score_of(distance),
            distance_deg=round(distance, 2),
            per_angle_deg={
                a: round(float(d), 2) for a, d in zip(self.angles, diff.mean(axis=0), strict=True)
            },
            worst_phase=worst,
            worst_phase_deg=round(by_phase[worst], 2),
        )

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


def reference_from_dict(data: object) -> ReferenceMotion:
    """A reference from its JSON form ``{"angles": [...], "series": [[...], ...], "tolerance_deg": 15}``.

    Raises:
        ValueError: anything else, or a series that does not fit its angle names.
    """
    if not isinstance(data, dict) or not {"angles", "series"} <= data.keys():
        raise ValueError('a reference is an object with "angles" and "series" (and "tolerance_deg")')
    angles, series = data["angles"], data["series"]
    if not isinstance(angles, list) or not all(isinstance(a, str) for a in angles):
        raise ValueError('"angles" must be a list of angle names')
    try:
        array = np.asarray(series, dtype=np.float64)
        tolerance = float(data.get("tolerance_deg", 15.0))
    except (TypeError, ValueError):
        raise ValueError('"series" must be rows of numbers and "tolerance_deg" a number') from None
    if array.ndim != 2:
        raise ValueError('"series" must be rows of numbers, one per sample')
    return ReferenceMotion(tuple(angles), array, tolerance)


def reference_to_dict(reference: ReferenceMotion) -> dict[str, object]:
    """The JSON form read by ``reference_from_dict``."""
    return {
        "angles": list(reference.angles),
        "series": reference.series.tolist(),
        "tolerance_deg": reference.tolerance_deg,
    }


def load_reference(path: str | Path) -> ReferenceMotion:
    """Read a reference rep from ``.npz`` (``ReferenceMotion.save``) or ``.json`` (``reference_to_dict``).

    Raises:
        ValueError: an unknown suffix or a malformed file.
        OSError: the file cannot be read.
    """
    path = Path(path)
    if path.suffix == ".npz":
        return ReferenceMotion.load(path)
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: not JSON ({exc})") from None
        return reference_from_dict(data)
    raise ValueError(f"{path}: a reference is a .json or .npz file")
