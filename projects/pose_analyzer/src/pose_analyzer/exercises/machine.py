"""One body side's rep state machine: hysteresis over the driver angle, with velocity events.

Phases: ``waiting`` (no rest position seen yet: a clip that starts in the middle of a
rep does not count that partial rep) -> ``rest`` -> ``moving`` (left the rest
position) -> ``peak`` (beyond the peak threshold) -> ``returning`` -> back to
``rest``, which completes a candidate rep.  Going back to rest without reaching the
peak abandons the attempt.  The machine only finds candidates and says what is wrong
with them (``Candidate.reason``); ``RepCounter`` scores and records them.

Starting state (docs/biomechanics.md, "Starting state"): in ``waiting`` the rest
position is the rest threshold, or a pose at most ``start_margin`` degrees short of it
held still (range within ``START_STILL_DEG``) for ``START_HOLD_S``.  A clip that
starts mid-rep passes that band moving, so it still waits for the first true rest.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from pose_analyzer.exercises.definition import ExerciseDefinition

FloatArray = npt.NDArray[np.floating[Any]]

# A person unseen for longer than this starts over in ``waiting``: we cannot know what
# happened in between, and must not join two half reps across the gap.
MAX_GAP_S = 1.0
# How much of the rest position before a rep belongs to the rep's samples.
REST_WINDOW_S = 1.0
# Starting state: how long a near-rest pose must be held, and how still (the spread of
# the driver over that time).  0.3 s is 9 frames at 30 fps, 4 at 15 fps; 6 degrees is
# about twice the frame-to-frame noise of the smoothed angles on the shared clips.
START_HOLD_S = 0.3
START_STILL_DEG = 6.0


@dataclass(slots=True)
class Candidate:
    """A movement that reached the peak and came back (or was cut off after the peak)."""

    start_t: float
    end_t: float
    peak_t: float | None
    driver: FloatArray
    samples: dict[str, FloatArray]
    reason: str | None = None
    # Per precondition, the share of the rep's frames (where it was seen) on which it held.
    held_shares: list[float | None] = field(default_factory=list)


class SideMachine:
    """The state machine of one side (or of the side the counter follows)."""

    def __init__(self, exercise: ExerciseDefinition, sample_names: tuple[str, ...]) -> None:
        self.exercise = exercise
        self.phase = "waiting"
        self._names = sample_names
        self._last_t: float | None = None
        self._prev: tuple[float, float] | None = None
        self._start_t = 0.0
        self._peak_t: float | None = None
        self._peak_at: float | None = None
        self._held_s = 0.0
        self._approach = 0.0
        self._move_index = 0
        self._times: list[float] = []
        self._driver: list[float] = []
        self._samples: dict[str, list[float]] = {m: [] for m in sample_names}
        self._pre: list[tuple[bool | None, ...]] = []
        self._near: deque[tuple[float, float]] = deque()
        self._near_since: float | None = None

    # -- thresholds ---------------------------------------------------------------
    def _at_rest(self, value: float) -> bool:
        d = self.exercise.driver
        return value >= d.rest if d.flexing else value <= d.rest

    def _at_peak(self, value: float) -> bool:
        d = self.exercise.driver
        return value <= d.peak if d.flexing else value >= d.peak

    def _near_peak(self, value: float) -> bool:
        d = self.exercise.driver
        return value <= d.peak + d.reversal_margin if d.flexing else value >= d.peak - d.reversal_margin

    def _near_rest_held(self, t: float, value: float) -> bool:
        """In ``waiting``: the pose has been within ``start_margin`` of rest, still, for START_HOLD_S."""
        d = self.exercise.driver
        near = value >= d.rest - d.start_margin if d.flexing else value <= d.rest + d.start_margin
        if not near:
            self._near.clear()
            self._near_since = None
            return False
        if self._near_since is None:
            self._near_since = t
        self._near.append((t, value))
        while t - self._near[0][0] > START_HOLD_S:
            self._near.popleft()
        values = [v for _, v in self._near]
        return t - self._near_since >= START_HOLD_S - 1e-9 and max(values) - min(values) <= START_STILL_DEG

    # -- state --------------------------------------------------------------------
    def reset(self, phase: str) -> None:
        self.phase = phase
        self._peak_t = None
        self._peak_at = None
        self._held_s = 0.0
        self._approach = 0.0
        self._move_index = 0
        self._times.clear()
        self._driver.clear()
        self._pre.clear()
        for series in self._samples.values():
            series.clear()
        if phase == "waiting":
            self._near.clear()
            self._near_since = None
            self._prev = None

    def interrupt(self, reason: str) -> Candidate | None:
        """End what was in progress (a cut, a gap): a candidate past its peak is rejected."""
        cand = None
        if self.phase in ("peak", "returning") and self._times:
            cand = self._candidate(self._times[-1], reason)
        self.reset("waiting")
        self._last_t = None
        return cand

    def step(
        self, t: float, value: float, sample: dict[str, float], pre: tuple[bool | None, ...]
    ) -> Candidate | None:
        """Feed one frame's driver value, rule samples and precondition results."""
        out = None
        if self._last_t is not None and t - self._last_t > MAX_GAP_S:
            out = self.interrupt("gap")
        self._last_t = t
        toward = None
        if self._prev is not None and t > self._prev[0]:
            rate = (value - self._prev[1]) / (t - self._prev[0])
            toward = -rate if self.exercise.driver.flexing else rate
        self._prev = (t, value)
        at_rest, at_peak = self._at_rest(value), self._at_peak(value)

        if self.phase == "waiting":
            if at_rest or self._near_rest_held(t, value):
                self.reset("rest")
                self._start_t = t
                self._record(t, value, sample, pre)
            return out
        if self.phase == "rest":
            if at_rest:
                # Keep the last REST_WINDOW_S of rest: the rep's range of motion and its
                # lockout checks include the position the rep started from.
                self._start_t = t
                self._record(t, value, sample, pre)
                self._trim(t - REST_WINDOW_S)
                return out
            self.phase = "moving"
            self._move_index = max(len(self._times) - 1, 0)
        self._record(t, value, sample, pre)
        if self.phase == "moving" and toward is not None:
            self._approach = max(self._approach, toward)
        if t - self._start_t > self.exercise.max_rep_s:
            cand = self._candidate(t, "too_long") if self.phase in ("peak", "returning") else None
            self.reset("waiting")
            return cand or out
        if at_peak or self._reversal(toward):
            if at_peak and self._peak_t is None:
                self._peak_t = t
            if self._peak_at is None:
                self._peak_at = t
            self.phase = "peak"
            if at_peak:
                return out
        if self._peak_t is not None:
            self._held_s += t - self._peak_t
            self._peak_t = None
        if at_rest:
            cand = self._finish(t) if self.phase in ("peak", "returning") else None
            self.reset("rest")
            self._start_t = t
            self._record(t, value, sample, pre)
            return cand or out
        if self.phase == "peak":
            self.phase = "returning"
        return out

    def _reversal(self, toward: float | None) -> bool:
        """A fast approach that turned back within ``reversal_margin`` of the peak threshold."""
        d = self.exercise.driver
        if self.phase != "moving" or d.min_speed is None or d.reversal_margin <= 0 or toward is None:
            return False
        apex = self._driver[-2] if len(self._driver) > 1 else self._driver[-1]
        return toward <= 0 and self._approach >= d.min_speed and self._near_peak(apex)

    def _trim(self, oldest: float) -> None:
        # The first sample at or after ``oldest`` (a loop here: a generator is one more code object
        # to read back per frame).
        drop = 0
        for t in self._times:
            if t >= oldest:
                break
            drop += 1
        if drop:
            del self._times[:drop], self._driver[:drop], self._pre[:drop]
            for series in self._samples.values():
                del series[:drop]

    def _record(self, t: float, value: float, sample: dict[str, float], pre: tuple[bool | None, ...]) -> None:
        self._times.append(t)
        self._driver.append(value)
        self._pre.append(pre)
        for name, series in self._samples.items():
            series.append(sample.get(name, float("nan")))

    def _candidate(self, end_t: float, reason: str | None) -> Candidate:
        return Candidate(
            start_t=self._start_t,
            end_t=end_t,
            peak_t=self._peak_at,
            driver=np.asarray(self._driver, dtype=np.float64),
            samples={k: np.asarray(v, dtype=np.float64) for k, v in self._samples.items()},
            reason=reason,
            held_shares=self._held_shares(),
        )

    def _held_shares(self) -> list[float | None]:
        frames = self._pre[self._move_index :]
        shares: list[float | None] = []
        for j in range(len(self.exercise.preconditions)):
            seen = [bool(f[j]) for f in frames if f[j] is not None]
            shares.append(sum(seen) / len(seen) if seen else None)
        return shares

    def _finish(self, end_t: float) -> Candidate:
        ex = self.exercise
        cand = self._candidate(end_t, None)
        peak = int(cand.driver.argmin() if ex.driver.flexing else cand.driver.argmax())
        if end_t - self._start_t < ex.min_rep_s:
            cand.reason = "too_short"
        elif self._held_s < ex.hold_s:
            cand.reason = "hold_too_short"
        elif ex.driver.min_speed is not None and self._approach < ex.driver.min_speed:
            cand.reason = "too_slow"
        elif not self._rising(cand, peak):
            cand.reason = "not_rising"
        else:
            for pre, share in zip(ex.preconditions, cand.held_shares, strict=True):
                if share is not None and share < ex.precondition_share:
                    cand.reason = pre.code
                    break
        return cand

    def _rising(self, cand: Candidate, peak: int) -> bool:
        """Each ``rising`` metric is larger at the peak than where the rep left rest (when both are seen)."""
        start = self._move_index
        for name in self.exercise.driver.rising:
            series = cand.samples.get(name)
            if series is None or not series.size:
                continue
            before, at = float(series[start]), float(series[peak])
            if np.isfinite(before) and np.isfinite(at) and at <= before:
                return False
        return True
