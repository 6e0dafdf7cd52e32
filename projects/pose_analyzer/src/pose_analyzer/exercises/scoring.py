"""Form scoring: evaluate an exercise's rules over the samples of one repetition."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from pose_analyzer.exercises.definition import ExerciseDefinition, FormRule
from pose_analyzer.types import Fault

FloatArray = npt.NDArray[np.floating[Any]]

_AGGREGATES: dict[str, Callable[[FloatArray], Any]] = {"min": np.min, "max": np.max, "mean": np.mean}


class FormScorer:
    """Scores a rep 0-100 from the exercise's weighted form rules.

    The score is 100 times the share of rule weight that passed.  A rule whose metric
    was never seen during the rep (e.g. knee valgus from a side view) is left out of
    both the faults and the total, rather than counted as passed or failed.
    """

    def __init__(self, exercise: ExerciseDefinition) -> None:
        self.exercise = exercise

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metric names the rules need, so the counter records only these."""
        return tuple(dict.fromkeys(r.metric for r in self.exercise.rules))

    @staticmethod
    def evaluate(rule: FormRule, series: FloatArray, peak_index: int | None = None) -> float | None:
        """The rule's aggregate over the finite samples of ``series``; None when none is finite."""
        if rule.aggregate == "at_peak":
            if peak_index is None or not 0 <= peak_index < series.size:
                return None
            value = float(series[peak_index])
            return value if np.isfinite(value) else None
        finite = series[np.isfinite(series)]
        if finite.size == 0:
            return None
        return float(_AGGREGATES[rule.aggregate](finite))

    def score(
        self, series: dict[str, FloatArray], peak_index: int | None = None
    ) -> tuple[float, list[Fault]]:
        """Return (score 0-100, faults) for one rep.

        ``series`` holds each metric's samples over the rep; ``peak_index`` is the sample
        where the driver angle was most extreme (for ``at_peak`` rules).
        """
        total = 0.0
        faults: list[Fault] = []
        for rule in self.exercise.rules:
            samples = np.asarray(series.get(rule.metric, ()), dtype=np.float64)
            value = self.evaluate(rule, samples, peak_index)
            if value is None:
                continue
            total += rule.weight
            if (rule.min is not None and value < rule.min) or (rule.max is not None and value > rule.max):
                faults.append(Fault(code=rule.code, message=rule.message, weight=rule.weight))
        if total == 0:
            return 100.0, faults
        failed = sum(f.weight for f in faults)
        return round(100.0 * (1.0 - failed / total), 1), faults
