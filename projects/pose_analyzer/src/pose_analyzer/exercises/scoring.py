"""Form scoring: evaluate an exercise's rules over the samples of one repetition.

Two things keep a score about the athlete rather than about the keypoint model
(docs/biomechanics.md, "Scores across backends"):

- Extremes (``min``/``max``) are taken after a running median of three samples: a real
  extreme (the bottom of a push-up, the top of a curl) lasts several frames, a one-frame
  detector glitch (a wrist snapping onto the elbow reads an elbow near 0 deg) does not,
  and must neither fake a fault nor hide one.  Not for fast techniques (a driver with
  ``min_speed``): the apex of a punch may be one sample, and is real.
- ``angle_tolerance_deg``: a rule on an angle fires only when the value is beyond its
  limit by more than the keypoint model's known angle error (``BackendSpec`` in
  ``detection/registry.py``, measured and stated there).  A fault is never claimed that
  the measurement cannot show; a genuinely bad rep (further out than the error) still
  loses the rule's weight.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.ndimage import median_filter

from pose_analyzer.biomechanics.angles import ANGLE_NAMES
from pose_analyzer.exercises.definition import SIDED_NAMES, ExerciseDefinition, FormRule
from pose_analyzer.types import Fault

FloatArray = npt.NDArray[np.floating[Any]]

_AGGREGATES: dict[str, Callable[[FloatArray], Any]] = {"min": np.min, "max": np.max, "mean": np.mean}
# Metrics measured in degrees (joint and axial angles, the posture angles): the ones an
# angle tolerance applies to.  The others are ratios of distances.
ANGLE_METRICS: frozenset[str] = frozenset((*ANGLE_NAMES, *SIDED_NAMES, "trunk_incline", "body_line"))
# Samples in the running median taken before an extreme: one-frame spikes are removed.
_SPIKE_WINDOW = 3


@dataclass(frozen=True, slots=True)
class Assessment:
    """The form of one rep: ``score`` 0-100 over the rules that were measured, or None
    when none was; the faults found; the codes of the rules measured and not measured."""

    score: float | None
    faults: list[Fault] = field(default_factory=list)
    measured: tuple[str, ...] = ()
    unmeasured: tuple[str, ...] = ()


class FormScorer:
    """Scores a rep 0-100 from the exercise's weighted form rules.

    The score is 100 times the share of the *measured* rule weight that passed.  A rule
    whose metric was never seen during the rep (e.g. knee valgus from a side view, an
    occluded arm) is reported as not measured: it is neither a pass nor a fault, and a
    rep on which no rule could be measured has no score at all (None), never 100.
    """

    def __init__(self, exercise: ExerciseDefinition, angle_tolerance_deg: float = 0.0) -> None:
        if not angle_tolerance_deg >= 0:
            raise ValueError(f"angle_tolerance_deg must be >= 0, got {angle_tolerance_deg}")
        self.exercise = exercise
        self.angle_tolerance_deg = angle_tolerance_deg
        self.despike = exercise.driver.min_speed is None

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metric names the rules need, so the counter records only these."""
        return tuple(dict.fromkeys(r.metric for r in self.exercise.rules))

    def evaluate(self, rule: FormRule, series: FloatArray, peak_index: int | None = None) -> float | None:
        """The rule's aggregate over the finite samples of ``series``; None when none is finite."""
        if rule.aggregate == "at_peak":
            if peak_index is None or not 0 <= peak_index < series.size:
                return None
            value = float(series[peak_index])
            return value if np.isfinite(value) else None
        finite = series[np.isfinite(series)]
        if finite.size == 0:
            return None
        if self.despike and rule.aggregate in ("min", "max") and finite.size >= _SPIKE_WINDOW:
            finite = median_filter(finite, size=_SPIKE_WINDOW, mode="mirror")
        return float(_AGGREGATES[rule.aggregate](finite))

    def tolerance(self, rule: FormRule) -> float:
        """How far beyond its limit ``rule``'s value may read before it is a fault."""
        return self.angle_tolerance_deg if rule.metric in ANGLE_METRICS else 0.0

    def assess(self, series: dict[str, FloatArray], peak_index: int | None = None) -> Assessment:
        """Evaluate every rule over one rep.

        ``series`` holds each metric's samples over the rep; ``peak_index`` is the sample
        where the driver angle was most extreme (for ``at_peak`` rules).
        """
        total = 0.0
        faults: list[Fault] = []
        measured: list[str] = []
        unmeasured: list[str] = []
        for rule in self.exercise.rules:
            samples = np.asarray(series.get(rule.metric, ()), dtype=np.float64)
            value = self.evaluate(rule, samples, peak_index)
            if value is None:
                unmeasured.append(rule.code)
                continue
            measured.append(rule.code)
            total += rule.weight
            slack = self.tolerance(rule)
            if (rule.min is not None and value < rule.min - slack) or (
                rule.max is not None and value > rule.max + slack
            ):
                faults.append(Fault(code=rule.code, message=rule.message, weight=rule.weight))
        if total == 0:
            return Assessment(None, faults, tuple(measured), tuple(unmeasured))
        failed = sum(f.weight for f in faults)
        score = round(100.0 * (1.0 - failed / total), 1)
        return Assessment(score, faults, tuple(measured), tuple(unmeasured))

    def score(
        self, series: dict[str, FloatArray], peak_index: int | None = None
    ) -> tuple[float | None, list[Fault]]:
        """Return (score 0-100 or None when no rule was measured, faults) for one rep."""
        result = self.assess(series, peak_index)
        return result.score, result.faults
