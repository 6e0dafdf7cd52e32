"""Repetition counting and scoring for one person, frame by frame.

The state machine itself (hysteresis, starting state, velocity events) lives in
``machine.py``; this module chooses the side(s) to follow, evaluates the exercise's
posture preconditions on every frame, and turns the machine's candidates into counted
``RepRecord``s (scored by ``FormScorer``) or ``RejectedRep``s that say why they did not
count.  With ``side: each`` both sides run their own machine (alternating punches);
with a ``combination`` (jab-cross) consecutive reps are grouped into one.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from pose_analyzer.exercises.definition import (
    SIDED_MEASURES,
    SIDED_NAMES,
    ExerciseDefinition,
    Precondition,
    Side,
)
from pose_analyzer.exercises.machine import MAX_GAP_S, REST_WINDOW_S, Candidate, SideMachine
from pose_analyzer.exercises.scoring import FormScorer
from pose_analyzer.posture import POSTURE_NAMES, SIDED_POSTURE, posture_measures
from pose_analyzer.types import Fault, RejectedRep, RepRecord

FloatArray = npt.NDArray[np.floating[Any]]

__all__ = ["MAX_GAP_S", "REASONS", "REST_WINDOW_S", "RepCounter"]

# Smoothing of the per-side visibility used by Side.BEST, and the margin the other
# side must win by before the counter switches sides (so it does not flip-flop).
_VISIBILITY_ALPHA = 0.2
_SWITCH_MARGIN = 0.15
# Messages of the rejection reasons that are not a precondition's code.
REASONS: dict[str, str] = {
    "cut": "a scene cut or camera switch happened inside the rep",
    "gap": "the person was out of sight too long inside the rep",
    "too_short": "faster than the exercise's shortest rep",
    "too_long": "longer than the exercise's longest rep",
    "hold_too_short": "the peak position was not held long enough",
    "too_slow": "not fast enough for this technique",
    "not_rising": "the movement did not go away from the body",
}
_PHASE_RANK = {"waiting": 0, "rest": 1, "moving": 2, "returning": 3, "peak": 4}


class RepCounter:
    """Counts and scores one person's reps of one exercise, frame by frame.

    ``reps`` holds the counted reps, ``rejected`` the candidates that reached the peak
    but did not count (wrong posture, cut, too fast...), each with its reason.  For a
    ``combination`` exercise ``strikes`` holds the single reps it is made of.
    """

    def __init__(self, exercise: ExerciseDefinition, scorer: FormScorer | None = None) -> None:
        self.exercise = exercise
        self.scorer = scorer or FormScorer(exercise)
        self.reps: list[RepRecord] = []
        self.rejected: list[RejectedRep] = []
        self.strikes: list[RepRecord] = []
        self.side: str = "left" if exercise.driver.side is Side.LEFT else "right"
        self._each = exercise.driver.side is Side.EACH
        self._visibility = {"left": 0.0, "right": 0.0}
        names = (*self.scorer.metrics, *exercise.driver.rising)
        self._sample_names = tuple(dict.fromkeys(names))
        sides = ("left", "right") if self._each else ("",)
        self._machines = {s: SideMachine(exercise, self._sample_names) for s in sides}
        self._followed = tuple(self._machines.items())
        self._plans: dict[str, _Plan] = {}
        self._pending: list[RepRecord] = []
        named = {*self._sample_names, *(p.metric for p in exercise.preconditions)}
        self._posture_names = frozenset(
            {n for n in named if n in POSTURE_NAMES}
            | {f"{side}_{n}" for n in named if n in SIDED_POSTURE for side in ("left", "right")}
        )
        self._needs_posture = bool(self._posture_names)
        self.last_rep_series: FloatArray = np.empty(0)

    @property
    def count(self) -> int:
        return len(self.reps)

    @property
    def phase(self) -> str:
        """The machine's phase; with ``side: each`` the most advanced of the two sides."""
        if not self._each:
            return self._machines[""].phase
        return max((m.phase for m in self._machines.values()), key=_PHASE_RANK.__getitem__)

    def count_by_side(self) -> dict[str, int]:
        """Counted reps (for a combination: single strikes) per side."""
        out: dict[str, int] = {}
        for rep in self.strikes if self.exercise.combination else self.reps:
            out[rep.side] = out.get(rep.side, 0) + 1
        return out

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
        elif mode in (Side.MIN, Side.MAX):
            left, right = angles.get(f"left_{name}", math.nan), angles.get(f"right_{name}", math.nan)
            if math.isnan(left) or math.isnan(right):
                self.side = "right" if math.isnan(left) else "left"
            else:
                pick_left = left <= right if mode is Side.MIN else left >= right
                self.side = "left" if pick_left else "right"

    def resolve(self, name: str, values: dict[str, float], side: str | None = None) -> float:
        """The value of a metric name for ``side`` (default: the current side): ``knee`` -> ``left_knee``."""
        side = self.side if side is None else side
        if name in SIDED_NAMES or name in SIDED_MEASURES:
            if side == "mean":
                both = [values.get(f"{s}_{name}", math.nan) for s in ("left", "right")]
                seen = [v for v in both if not math.isnan(v)]
                return sum(seen) / len(seen) if seen else math.nan
            return values.get(f"{side}_{name}", math.nan)
        return values.get(name, math.nan)

    @property
    def needs_posture(self) -> bool:
        """Whether a precondition or a ``rising`` metric names a posture measure (``posture.py``)."""
        return self._needs_posture

    @property
    def posture_names(self) -> frozenset[str]:
        """The posture measures (``posture.POSTURE_NAMES``) a precondition or a ``rising`` metric reads."""
        return self._posture_names

    def update(
        self,
        timestamp: float,
        angles: dict[str, float],
        measures: dict[str, float] | None = None,
        visibility: dict[str, float] | None = None,
        keypoints: FloatArray | None = None,
        posture: dict[str, float] | None = None,
    ) -> RepRecord | None:
        """Feed one frame; return the RepRecord of a rep completed on this frame, else None.

        ``visibility`` is the mean confidence of the driver's keypoints per side
        (``{"left": .., "right": ..}``), used by ``side: best``.  ``keypoints`` (the
        person's (N, 3) smoothed keypoints) adds the posture measures of ``posture.py``
        that preconditions and ``rising`` may name; without them those are not measured.
        ``posture`` gives those measures instead, when the caller has them already.
        """
        merged = {**angles, **measures} if measures else dict(angles)
        if posture is not None:
            merged.update(posture)
        elif keypoints is not None and self._needs_posture:
            merged.update(posture_measures(keypoints))
        if self._each:
            followed = self._followed
        else:
            self._choose_side(angles, visibility or {})
            followed = ((self.side, self._machines[""]),)
        result = None
        for side, machine in followed:
            plan = self._plans.get(side) or self._plan(side)
            value = _value(plan.driver, angles)
            if value != value:  # NaN: the driver is not seen
                continue
            sample = {}
            for name, keys in plan.samples:
                sample[name] = _value(keys, merged)
            checks = []
            for check, keys in plan.preconditions:
                checks.append(check.holds(_value(keys, merged)))
            cand = machine.step(timestamp, value, sample, tuple(checks))
            if cand is not None:
                result = self._conclude(cand, side) or result
        return result

    def _plan(self, side: str) -> _Plan:
        """Which values ``resolve`` reads for each name on ``side``, worked out once per side."""
        ex = self.exercise
        plan = _Plan(
            _keys(ex.driver.angle, side),
            tuple((name, _keys(name, side)) for name in self._sample_names),
            tuple((check, _keys(check.metric, side)) for check in ex.preconditions),
        )
        self._plans[side] = plan
        return plan

    def mark_cut(self, timestamp: float) -> None:
        """A scene cut or camera switch happened before the frame at ``timestamp``.

        Nothing is joined across it: a rep in progress is dropped (kept in ``rejected``
        with reason ``cut`` if it had reached its peak) and every side starts over in
        ``waiting``, as at the start of a clip.
        """
        for side, machine in self._machines.items():
            cand = machine.interrupt("cut")
            if cand is not None:
                self._conclude(cand, side or self.side)
        self._pending.clear()

    def _conclude(self, cand: Candidate, side: str) -> RepRecord | None:
        ex = self.exercise
        if cand.reason is not None:
            pre = {p.code: p.message for p in ex.preconditions}
            message = pre.get(cand.reason) or REASONS.get(cand.reason, cand.reason)
            self.rejected.append(RejectedRep(ex.name, cand.start_t, cand.end_t, cand.reason, message, side))
            return None
        peak = int(cand.driver.argmin() if ex.driver.flexing else cand.driver.argmax())
        assessment = self.scorer.assess(cand.samples, peak)
        rep = RepRecord(
            exercise=ex.name,
            index=len(self.strikes if ex.combination else self.reps) + 1,
            start_time=cand.start_t,
            end_time=cand.end_t,
            range_of_motion_deg=round(float(cand.driver.max() - cand.driver.min()), 1),
            tempo_s=round(cand.end_t - cand.start_t, 3),
            score=math.nan if assessment.score is None else assessment.score,
            faults=assessment.faults,
            measured_rules=list(assessment.measured),
            unmeasured_rules=list(assessment.unmeasured),
            side=side,
            peak_time=cand.peak_t,
        )
        self.last_rep_series = cand.driver
        if ex.combination is None:
            self.reps.append(rep)
            return rep
        self.strikes.append(rep)
        return self._combine(rep)

    def _combine(self, rep: RepRecord) -> RepRecord | None:
        combo = self.exercise.combination
        assert combo is not None
        if self._pending:
            last = self._pending[-1]
            follows = rep.start_time - last.end_time <= combo.within_s
            if not follows or (combo.alternate and rep.side == last.side):
                self._pending.clear()
        self._pending.append(rep)
        if len(self._pending) < combo.steps:
            return None
        steps, self._pending = self._pending, []
        scores = [s.score for s in steps if math.isfinite(s.score)]
        faults: dict[str, Fault] = {}
        for step in steps:
            for fault in step.faults:
                faults.setdefault(fault.code, fault)
        measured = sorted({code for s in steps for code in s.measured_rules})
        combined = RepRecord(
            exercise=self.exercise.name,
            index=len(self.reps) + 1,
            start_time=steps[0].start_time,
            end_time=steps[-1].end_time,
            range_of_motion_deg=max(s.range_of_motion_deg for s in steps),
            tempo_s=round(steps[-1].end_time - steps[0].start_time, 3),
            score=round(sum(scores) / len(scores), 1) if scores else math.nan,
            faults=list(faults.values()),
            measured_rules=measured,
            unmeasured_rules=sorted({c for s in steps for c in s.unmeasured_rules} - set(measured)),
            side="+".join(s.side for s in steps),
            peak_time=steps[-1].peak_time,
        )
        self.reps.append(combined)
        return combined


class _Plan(NamedTuple):
    """The keys ``RepCounter.resolve`` reads on one side: the driver's, each sample's, each
    precondition's (one key, or the left and right ones for ``side: mean``)."""

    driver: tuple[str, ...]
    samples: tuple[tuple[str, tuple[str, ...]], ...]
    preconditions: tuple[tuple[Precondition, tuple[str, ...]], ...]


def _keys(name: str, side: str) -> tuple[str, ...]:
    """The keys ``RepCounter.resolve(name, values, side)`` reads."""
    if name in SIDED_NAMES or name in SIDED_MEASURES:
        return (f"left_{name}", f"right_{name}") if side == "mean" else (f"{side}_{name}",)
    return (name,)


def _value(keys: tuple[str, ...], values: dict[str, float]) -> float:
    """``RepCounter.resolve`` on keys worked out by ``_keys``: the one value, or the mean of the
    left and right ones that are seen (NaN when neither is)."""
    if len(keys) == 1:
        return values.get(keys[0], math.nan)
    left, right = values.get(keys[0], math.nan), values.get(keys[1], math.nan)
    if left != left:
        return right
    if right != right:
        return left
    return (left + right) / 2
