"""Keypoint smoothing: confidence gating followed by a One Euro filter.

The One Euro filter (Casiez, Roussel and Vogel, CHI 2012) is a low-pass filter whose
cutoff rises with speed: still keypoints are smoothed hard (low jitter) and moving
ones lightly (low lag).  As in MediaPipe's legacy ``LandmarksSmoothingCalculator``,
coordinates are divided by the person's size before filtering, so ``beta`` means the
same for a person 100 or 600 pixels tall.

Gating: a keypoint whose confidence falls under ``min_confidence``, or that moves
faster than ``max_speed`` person-sizes per second since the previous frame (a
detector glitch such as MediaPipe briefly swapping a wrist: real motion in the
exercise clips stays under 4.4 sizes/s, glitches exceed 7), keeps its last smoothed
position for at most ``max_hold_frames`` frames (a brief occlusion should not make an
angle vanish).  After that it becomes NaN, and it is accepted again as soon as it is
seen: its filter restarts there rather than gliding in from a stale position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pose_analyzer.keypoints import NUM_KEYPOINTS

FloatArray = npt.NDArray[np.floating[Any]]

_TWO_PI = 2.0 * math.pi


@dataclass(frozen=True, slots=True)
class SmoothingConfig:
    """How keypoints are smoothed.

    Defaults measured on the four real exercise clips (docs/biomechanics.md,
    "Smoothing"): MediaPipe's legacy values (min_cutoff 0.05 Hz, beta 80) leave the
    filter almost transparent once a keypoint moves (jitter of the driving angle only
    5-20 % lower than unfiltered), because beta 80 opens the cutoff to ~80 Hz at one
    person-size per second.  ``beta`` 5 with ``min_cutoff`` 0.5 Hz halves the jitter
    (median |second difference| of the angle 0.07-1.1 deg vs 0.22-1.65 unfiltered)
    while the peak-to-peak amplitude of every rep stays within 0.5 deg of the raw one,
    and all rep counts are unchanged.  ``enabled=False`` (single images) keeps only the
    gating.
    """

    enabled: bool = True
    min_cutoff: float = 0.5
    beta: float = 5.0
    d_cutoff: float = 1.0
    min_confidence: float = 0.5
    max_hold_frames: int = 5
    max_speed: float = 6.0

    def __post_init__(self) -> None:
        if self.min_cutoff <= 0 or self.d_cutoff <= 0:
            raise ValueError("min_cutoff and d_cutoff must be positive (Hz)")
        if self.beta < 0:
            raise ValueError("beta must be >= 0")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError("min_confidence must lie in [0, 1]")
        if self.max_hold_frames < 0:
            raise ValueError("max_hold_frames must be >= 0")
        if self.max_speed <= 0:
            raise ValueError("max_speed must be positive (person sizes per second)")


class OneEuroFilter:
    """A One Euro filter over an array of independent signals, updated all at once.

    ``filter(values, t)`` takes any array shape (kept from the first call) and returns
    the filtered array.  NaN entries pass through as NaN and restart their signal.

    The state is kept in plain floats: the filter runs per person per frame on 42 signals,
    where numpy's per-call overhead (several microseconds a call once the pose model's
    inference has flushed the CPU's caches) costs more than the arithmetic.
    """

    def __init__(self, min_cutoff: float = 0.05, beta: float = 80.0, d_cutoff: float = 1.0) -> None:
        self.min_cutoff = min_cutoff
        self.beta = beta
        self.d_cutoff = d_cutoff
        self._shape: tuple[int, ...] | None = None
        self._x: list[float] = []
        self._dx: list[float] = []
        self._t: float | None = None

    def reset(self) -> None:
        self._shape = None
        self._x, self._dx = [], []
        self._t = None

    def filter(self, values: FloatArray, t: float, scale: float = 1.0) -> FloatArray:
        """Filter ``values`` observed at time ``t`` (seconds).

        ``scale`` divides the values before the speed is measured (the person's size in
        pixels), so ``beta`` is independent of the image resolution.

        Raises:
            ValueError: the shape changed, or time did not move forward.
        """
        array = np.asarray(values, dtype=np.float64)
        if self._shape is not None and array.shape != self._shape:
            raise ValueError(f"shape changed from {self._shape} to {array.shape}")
        self._shape = array.shape
        return np.array(self.step(array.ravel().tolist(), t, scale), dtype=np.float64).reshape(array.shape)

    def step(self, x: list[float], t: float, scale: float = 1.0) -> list[float]:
        """``filter`` on a flat list of signals (the same length each call); returns a new list.

        Raises:
            ValueError: the length changed, or time did not move forward.
        """
        if self._t is None:
            self._x, self._dx, self._t = list(x), [0.0] * len(x), t
            return list(x)
        if len(x) != len(self._x):
            raise ValueError(f"shape changed from {len(self._x)} to {len(x)} signals")
        dt = t - self._t
        if dt <= 0:
            raise ValueError(f"timestamps must increase (previous {self._t}, now {t})")
        alpha_d = 1.0 / (1.0 + (1.0 / (_TWO_PI * self.d_cutoff)) / dt)
        rate_scale = dt * scale
        # alpha = 1 / (1 + tau / dt) with tau = 1 / (2 pi cutoff) is 1 / (1 + 1 / a) with
        # a = 2 pi dt cutoff = a_min + a_beta |rate|.
        a_min = _TWO_PI * dt * self.min_cutoff
        a_beta = _TWO_PI * dt * self.beta
        out = []
        rates = []
        for value, previous, rate in zip(x, self._x, self._dx, strict=True):
            # A signal that was NaN restarts where it is now (its stored rate is 0 already).
            prev = value if previous != previous else previous
            step = value - prev
            rate_hat = rate + alpha_d * (step / rate_scale - rate)
            out.append(prev + step / (1.0 + 1.0 / (a_min + a_beta * abs(rate_hat))))
            # A NaN (or infinite) rate is stored as 0: the signal restarts from rest.
            rates.append(rate_hat if math.isfinite(rate_hat) else 0.0)
        self._x, self._dx, self._t = out, rates, t
        return list(out)


class KeypointSmoother:
    """Gates and smooths one person's (NUM_KEYPOINTS, 3) keypoints frame after frame.

    In plain floats from one ``tolist`` (see ``OneEuroFilter``); tests/unit/pose_analyzer/
    test_perf_equivalence.py checks it against the per-keypoint formulas.
    """

    def __init__(self, config: SmoothingConfig | None = None) -> None:
        self.config = config or SmoothingConfig()
        c = self.config
        self._filter = OneEuroFilter(c.min_cutoff, c.beta, c.d_cutoff)
        # The last output's x, y of every keypoint in turn; frames each keypoint has been unseen;
        # when it was last accepted.
        self._last: list[float] | None = None
        self._missing = [0] * NUM_KEYPOINTS
        self._seen_t = [0.0] * NUM_KEYPOINTS
        self._last_t: float | None = None

    def reset(self) -> None:
        """Forget the history: the next frame is taken as it is."""
        self._filter.reset()
        self._last = None
        self._missing = [0] * NUM_KEYPOINTS
        self._last_t = None

    def update(self, keypoints: FloatArray, timestamp: float) -> FloatArray:
        """Return gated, smoothed keypoints (float32, same layout; confidence column kept).

        Raises:
            ValueError: keypoints are not (NUM_KEYPOINTS, 3).
        """
        if keypoints.shape != (NUM_KEYPOINTS, 3):
            raise ValueError(f"keypoints must be ({NUM_KEYPOINTS}, 3), got {keypoints.shape}")
        c = self.config
        if self._last_t is not None and timestamp <= self._last_t:
            # A stream restarted or a frame arrived twice: start over rather than fail.
            self.reset()
        rows = keypoints.tolist()
        min_confidence = c.min_confidence
        # One pass, no comprehensions or helper calls: per person per frame, between two inferences
        # that evict the CPU's caches, each extra code object or numpy call read back costs more
        # than the arithmetic.  Confident, and both coordinates present (NaN is unequal to itself);
        # the person's scale is the visible points' extent (``person_scale``).
        seen = [False] * NUM_KEYPOINTS
        low_x = low_y = math.inf
        high_x = high_y = -math.inf
        visible = 0
        for i, (x, y, conf) in enumerate(rows):
            if conf >= min_confidence and x == x and y == y:
                seen[i] = True
                visible += 1
                if x < low_x:
                    low_x = x
                if x > high_x:
                    high_x = x
                if y < low_y:
                    low_y = y
                if y > high_y:
                    high_y = y
        scale = max((high_x - low_x + (high_y - low_y)) / 2, 1.0) if visible >= 2 else 1.0
        last, missing, seen_t = self._last, self._missing, self._seen_t
        max_speed, max_hold = c.max_speed, c.max_hold_frames
        # The One Euro filter (``OneEuroFilter.step``'s arithmetic, written out here on its state so
        # that one loop does both): off, or on its first frame, passes the gated values through.
        euro = self._filter
        filtering = c.enabled and euro._t is not None
        if filtering:
            assert euro._t is not None
            dt = timestamp - euro._t
            alpha_d = 1.0 / (1.0 + (1.0 / (_TWO_PI * euro.d_cutoff)) / dt)
            rate_scale = dt * scale
            a_min = _TWO_PI * dt * euro.min_cutoff
            a_beta = _TWO_PI * dt * euro.beta
            state, rates = euro._x, euro._dx
        out: list[float] = []
        table: list[list[float]] = []
        for i, (x, y, conf) in enumerate(rows):
            ok = seen[i]
            if last is not None and ok:
                # Speed since the keypoint was last accepted; one already dropped to NaN (a long
                # gap) has nothing to be judged against (NaN compares False) and is taken as it is.
                elapsed = max(timestamp - seen_t[i], 1e-6)
                ok = not math.hypot(x - last[2 * i], y - last[2 * i + 1]) / scale / elapsed > max_speed
            if ok:
                seen_t[i] = timestamp
                missing[i] = 0
            else:
                missing[i] += 1
                # Held at the last smoothed position, then NaN after max_hold_frames.
                if last is not None and missing[i] <= max_hold:
                    x, y = last[2 * i], last[2 * i + 1]
                else:
                    x = y = math.nan
            if filtering:
                # x, then y: a signal that was NaN restarts where it is now (its rate is 0 already);
                # a NaN or infinite rate (``r - r`` is not 0) is stored as 0: it restarts from rest.
                j = 2 * i
                for value in (x, y):
                    previous, rate = state[j], rates[j]
                    prev = value if previous != previous else previous
                    step = value - prev
                    rate_hat = rate + alpha_d * (step / rate_scale - rate)
                    out.append(prev + step / (1.0 + 1.0 / (a_min + a_beta * abs(rate_hat))))
                    rates[j] = rate_hat if rate_hat - rate_hat == 0.0 else 0.0
                    j += 1
            else:
                out.append(x)
                out.append(y)
            table.append([out[-2], out[-1], conf])
        if c.enabled:
            if filtering:
                euro._x, euro._t = out, timestamp
            else:
                euro.step(out, timestamp, scale)
        self._last_t = timestamp
        self._last = out
        return np.array(table, dtype=np.float32)


def person_scale(keypoints: FloatArray) -> float:
    """The person's size in pixels: the mean of the visible keypoints' box width and height."""
    rows = np.asarray(keypoints, dtype=np.float64)[:, :2].tolist()
    return _visible_scale([r for r in rows if r[0] == r[0] and r[1] == r[1]])


def _visible_scale(points: list[list[float]]) -> float:
    """``person_scale`` of the visible points only, as ``[x, y, ...]`` rows."""
    if len(points) < 2:
        return 1.0
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    return max((max(xs) - min(xs) + (max(ys) - min(ys))) / 2, 1.0)
