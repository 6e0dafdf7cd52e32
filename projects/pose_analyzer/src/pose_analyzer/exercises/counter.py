"""Repetition counting: a hysteresis state machine over one person's driver angle.

Phases: ``waiting`` (the rest position has not been seen yet: a clip that starts in
the middle of a rep does not count that partial rep) -> ``rest`` -> ``moving`` (left
the rest position) -> ``peak`` (beyond the peak threshold) -> ``returning`` -> back
to ``rest``, which completes the rep.  Going back to rest without reaching the peak
abandons the attempt.  Noise around either threshold cannot count a rep, since a rep
needs both thresholds crossed in order.  A rep shorter than ``min_rep_s``, longer
than ``max_rep_s`` or held at the peak for less than ``hold_s`` is not counted.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from pose_analyzer.exercises.definition import SIDED_MEASURES, SIDED_NAMES, ExerciseDefinition, Side
from pose_analyzer.exercises.scoring import FormScorer
from pose_analyzer.types import RepRecord

FloatArray = npt.NDArray[np.floating[Any]]

# A person unseen for longer than this starts over in ``waiting``: we cannot know what
# happened in between, and must not join two half reps across the gap.
MAX_GAP_S = 1.0
# Smoothing of the per-side visibility used by Side.BEST, and the margin the other
# side must win by before the counter switches sides (so it does not flip-flop).
_VISIBILITY_ALPHA = 0.2
_SWITCH_MARGIN = 0.15
# How much of the rest position before a rep belongs to the rep's samples.
REST_WINDOW_S = 1.0


class RepCounter:
    """Counts and scores one person's reps of one exercise, frame by frame."""

    def __init__(self, exercise: ExerciseDefinition, scorer: FormScorer | None = None) -> None:
        self.exercise = exercise
        self.scorer = scorer or FormScorer(exercise)
        self.reps: list[RepRecord] = []
        self.phase = "waiting"
        self.side: str = "left" if exercise.driver.side is Side.LEFT else "right"
        self._visibility = {"left": 0.0, "right": 0.0}
        self._last_t: float | None = None
        self._start_t = 0.0
        self._peak_t: float | None = None
        self._held_s = 0.0
        self._times: list[float] = []
        self._driver: list[float] = []
        self._samples: dict[str, list[float]] = {m: [] for m in self.scorer.metrics}
        self.last_rep_series: FloatArray = np.empty(0)

    @property
    def count(self) -> int:
        return len(self.reps)

    def _choose_side(self, angles: dict[str, float], visibility: dict[str, float]) -> None:
        mode = self.exercise.driver.side
        name = self.exercise.driver.angle
        if mode in (Side.LEFT, Side.RIGHT):
            self.side = mode.value
        elif mode is Side.MEAN:
            self.side = "mean"
        elif mode is Side.BEST:
            for s in ("left", "right"):
                v = visibility.get(s, 0.0)
                self._visibility[s] += _VISIBILITY_ALPHA * (v - self._visibility[s])
            other = "left" if self.side == "right" else "right"
            current_lost = math.isnan(angles.get(f"{self.side}_{name}", math.nan))
            other_better = self._visibility[other] > self._visibility[self.side] + _SWITCH_MARGIN
            other_seen = not math.isnan(angles.get(f"{other}_{name}", math.nan))
            if (current_lost or other_better) and other_seen:
                self.side = other
        else:
            left, right = angles.get(f"left_{name}", math.nan), angles.get(f"right_{name}", math.nan)
            if math.isnan(left) or math.isnan(right):
                self.side = "right" if math.isnan(left) else "left"
            else:
                pick_left = left <= right if mode is Side.MIN else left >= right
                self.side = "left" if pick_left else "right"

    def resolve(self, name: str, values: dict[str, float]) -> float:
        """The value of a metric name for the current side (``knee`` -> ``left_knee``...)."""
        if name in SIDED_NAMES or name in SIDED_MEASURES:
            if self.side == "mean":
                both = [values.get(f"{s}_{name}", math.nan) for s in ("left", "right")]
                seen = [v for v in both if not math.isnan(v)]
                return sum(seen) / len(seen) if seen else math.nan
            return values.get(f"{self.side}_{name}", math.nan)
        return values.get(name, math.nan)

    def _at_rest(self, value: float) -> bool:
        d = self.exercise.driver
        return value >= d.rest if d.flexing else value <= d.rest

    def _at_peak(self, value: float) -> bool:
        d = self.exercise.driver
        return value <= d.peak if d.flexing else value >= d.peak

    def _reset(self, phase: str) -> None:
        self.phase = phase
        self._peak_t = None
        self._held_s = 0.0
        self._times.clear()
        self._driver.clear()
        for series in self._samples.values():
            series.clear()

    def update(
        self,
        timestamp: float,
        angles: dict[str, float],
        measures: dict[str, float] | None = None,
        visibility: dict[str, float] | None = None,
    ) -> RepRecord | None:
        """Feed one frame; return the RepRecord of a rep completed on this frame, else None.

        ``visibility`` is the mean confidence of the driver's keypoints per side
        (``{"left": .., "right": ..}``), used by ``side: best``.
        """
        self._choose_side(angles, visibility or {})
        value = self.resolve(self.exercise.driver.angle, angles)
        if math.isnan(value):
            return None
        if self._last_t is not None and timestamp - self._last_t > MAX_GAP_S:
            self._reset("waiting")
        self._last_t = timestamp
        at_rest, at_peak = self._at_rest(value), self._at_peak(value)

        if self.phase == "waiting":
            if at_rest:
                self._reset("rest")
                self._start_t = timestamp
            return None
        if self.phase == "rest":
            if at_rest:
                # Keep the last REST_WINDOW_S of rest: the rep's range of motion and its
                # lockout checks include the position the rep started from.
                self._start_t = timestamp
                self._record(timestamp, value, angles, measures or {})
                self._trim(timestamp - REST_WINDOW_S)
                return None
            self.phase = "moving"
        self._record(timestamp, value, angles, measures or {})
        if timestamp - self._start_t > self.exercise.max_rep_s:
            self._reset("waiting")
            return None
        if at_peak:
            if self._peak_t is None:
                self._peak_t = timestamp
            self.phase = "peak"
            return None
        if self._peak_t is not None:
            self._held_s += timestamp - self._peak_t
            self._peak_t = None
        if at_rest:
            rep = self._finish(timestamp) if self.phase in ("peak", "returning") else None
            self._reset("rest")
            self._start_t = timestamp
            return rep
        if self.phase == "peak":
            self.phase = "returning"
        return None

    def _trim(self, oldest: float) -> None:
        drop = next((i for i, t in enumerate(self._times) if t >= oldest), len(self._times))
        if drop:
            del self._times[:drop], self._driver[:drop]
            for series in self._samples.values():
                del series[:drop]

    def _record(self, t: float, value: float, angles: dict[str, float], measures: dict[str, float]) -> None:
        self._times.append(t)
        self._driver.append(value)
        merged = {**angles, **measures}
        for name, series in self._samples.items():
            series.append(self.resolve(name, merged))

    def _finish(self, end_t: float) -> RepRecord | None:
        duration = end_t - self._start_t
        ex = self.exercise
        if duration < ex.min_rep_s or self._held_s < ex.hold_s:
            return None
        driver = np.asarray(self._driver)
        peak = int(driver.argmin() if ex.driver.flexing else driver.argmax())
        score, faults = self.scorer.score({k: np.asarray(v) for k, v in self._samples.items()}, peak)
        rep = RepRecord(
            exercise=ex.name,
            index=len(self.reps) + 1,
            start_time=self._start_t,
            end_time=end_t,
            range_of_motion_deg=round(float(driver.max() - driver.min()), 1),
            tempo_s=round(duration, 3),
            score=score,
            faults=faults,
        )
        self.reps.append(rep)
        self.last_rep_series = driver
        return rep
