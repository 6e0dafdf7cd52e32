"""Groups the frames of a session's cameras by capture time, so each group can be triangulated.

Each camera's frames arrive in capture order (a stream's capture times never decrease), but the
cameras arrive at their own pace: one lags, one drops frames, all jitter.  ``FrameGrouper``
holds the frames not yet grouped and emits a ``FrameGroup`` as soon as it is decided:

- the group's moment is the earliest capture time pending; a camera's next frame belongs to it
  when it was captured within ``tolerance_s`` after that moment (default: half the frame period,
  estimated from the streams' own capture times);
- a camera is decided for the group when it has a member frame, or a frame captured after the
  group's window (it dropped that moment: captures never go back, so nothing will come), or
  when its stream says it cannot send one: a stream that reports what it receives
  (``received``) and what it drops unanalysed (``dropped``, its latest-frame-wins slot replaced
  the frame) is decided as soon as it has received a frame captured after the window and has
  none at or before the window end still in analysis.  So a group of the cameras present goes
  out as soon as it cannot get more, not when the dropping camera's next frame is analysed;
- a group whose cameras are all decided goes out at once; otherwise it goes out with the cameras
  present once its oldest frame has waited ``deadline_s`` (arrival clock), so a lagging or
  silent camera never stalls the others.

Coordinated dropping (``choose``): a camera that keeps several frames waiting
(``streaming.slot.MomentSlot``) asks which one to analyse next, so the cameras of a session that
cannot keep up drop the same moments instead of each its own (which leaves most groups partial):
the oldest waiting frame of a moment another camera already chose whose group is still open;
else the newest waiting frame that every other live camera has received and not yet dropped
(within the tolerance); else the newest.  A camera that stops sending is not waited for: its
cameras fall back to their newest frames and the deadline closes the groups.

``lateness_s`` says, per camera of a group, how long after the group's first frame that
camera's frame arrived (server clock).  The grouper keeps no clock of its own: every call
takes ``now`` (a monotonic arrival time), so it is driven by events and tested without sleeps;
the caller arms a timer for ``next_deadline()``.
"""

from __future__ import annotations

import contextlib
import math
import statistics
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

DEFAULT_PERIOD_S = 1 / 30
DEFAULT_DEADLINE_S = 0.25
# Inter-frame intervals kept per camera for the period estimate.
PERIOD_WINDOW = 32
# Chosen moments remembered (they are forgotten as their groups go out).
CHOSEN_WINDOW = 64


class ClockWentBackwardsError(ValueError):
    """A camera's capture time went back: its client's error, that camera's stream only."""

    def __init__(self, camera: str, capture_ts: float, previous: float) -> None:
        super().__init__(
            f"camera {camera!r}: capture_ts went backwards ({capture_ts:.6f} s after {previous:.6f} s)"
        )
        self.camera = camera


class UnknownCameraError(ValueError):
    """A frame from a camera the grouper was not built for."""


@dataclass(frozen=True, slots=True)
class TimedFrame(Generic[T]):
    """One camera's frame waiting for its group: capture time (client clock), arrival (server)."""

    camera: str
    capture_ts: float
    arrived: float
    payload: T


@dataclass(frozen=True, slots=True)
class FrameGroup(Generic[T]):
    """Frames of one moment: ``frames`` by camera, ``missing`` the session's cameras without one."""

    capture_ts: float
    frames: Mapping[str, TimedFrame[T]]
    missing: tuple[str, ...]
    lateness_s: Mapping[str, float]
    timed_out: bool

    @property
    def triangulable(self) -> bool:
        """Two cameras at least: enough to triangulate."""
        return len(self.frames) >= 2


@dataclass(slots=True)
class CameraSync:
    """One camera's record in the grouper: groups joined, groups missed, lateness."""

    grouped: int = 0
    missed: int = 0
    lateness_total_s: float = 0.0
    lateness_max_s: float = 0.0
    last_capture_ts: float = -math.inf
    intervals: deque[float] = field(default_factory=lambda: deque(maxlen=PERIOD_WINDOW))

    @property
    def mean_lateness_s(self) -> float:
        return self.lateness_total_s / self.grouped if self.grouped else math.nan


class FrameGrouper(Generic[T]):
    """Groups frames of ``cameras`` by capture time (see the module doc).  Not thread-safe."""

    def __init__(
        self,
        cameras: Iterable[str],
        tolerance_s: float | None = None,
        deadline_s: float = DEFAULT_DEADLINE_S,
        default_period_s: float = DEFAULT_PERIOD_S,
        active: Iterable[str] | None = None,
    ) -> None:
        """``active``: the cameras groups wait for (default all); others count once they send."""
        names = tuple(cameras)
        if len(set(names)) != len(names) or not names:
            raise ValueError(f"cameras must be distinct and at least one: {names}")
        if tolerance_s is not None and not tolerance_s > 0:
            raise ValueError(f"tolerance_s must be positive, got {tolerance_s}")
        if not deadline_s > 0 or not default_period_s > 0:
            raise ValueError("deadline_s and default_period_s must be positive")
        self.cameras = names
        self.deadline_s = deadline_s
        self._tolerance_s = tolerance_s
        self._default_period_s = default_period_s
        self._active = set(names if active is None else active)
        self._pending: dict[str, deque[TimedFrame[T]]] = {name: deque() for name in names}
        self.sync: dict[str, CameraSync] = {name: CameraSync() for name in names}
        # Streams that report their frames: capture times received and not yet added or dropped
        # (in analysis or waiting for it), and the latest capture time received.
        self._in_analysis: dict[str, deque[float]] = {name: deque() for name in names}
        self._received_until: dict[str, float] = dict.fromkeys(names, -math.inf)
        # Moments cameras chose to analyse (``choose``) whose groups have not gone out yet.
        self._chosen: deque[float] = deque(maxlen=CHOSEN_WINDOW)

    @property
    def period_s(self) -> float:
        """The frame period: the median interval between consecutive captures of all cameras."""
        intervals = [i for s in self.sync.values() for i in s.intervals]
        return statistics.median(intervals) if intervals else self._default_period_s

    @property
    def tolerance_s(self) -> float:
        return self._tolerance_s if self._tolerance_s is not None else self.period_s / 2

    @property
    def pending(self) -> int:
        return sum(len(q) for q in self._pending.values())

    def add(self, camera: str, capture_ts: float, payload: T, now: float) -> list[FrameGroup[T]]:
        """Take one frame; returns the groups it decided (oldest first).

        Raises:
            UnknownCameraError: ``camera`` is not one of the grouper's.
            ClockWentBackwardsError: ``capture_ts`` is earlier than the camera's previous frame's;
                the frame is refused and nothing else changes.
        """
        state = self.sync.get(camera)
        if state is None:
            raise UnknownCameraError(f"no camera {camera!r}; the session has {', '.join(self.cameras)}")
        if capture_ts < state.last_capture_ts:
            raise ClockWentBackwardsError(camera, capture_ts, state.last_capture_ts)
        if math.isfinite(state.last_capture_ts) and capture_ts > state.last_capture_ts:
            state.intervals.append(capture_ts - state.last_capture_ts)
        state.last_capture_ts = capture_ts
        self._active.add(camera)
        self._settle(camera, capture_ts)
        self._pending[camera].append(TimedFrame(camera, capture_ts, now, payload))
        return self._decide(now)

    def received(self, camera: str, capture_ts: float, now: float) -> list[FrameGroup[T]]:
        """``camera``'s stream received a frame captured at ``capture_ts`` (before analysing it).

        Optional: a stream that reports its frames lets groups go out without waiting for its
        next analysed frame (module doc).  Returns the groups this decided.

        Raises:
            UnknownCameraError: ``camera`` is not one of the grouper's.
        """
        if camera not in self.sync:
            raise UnknownCameraError(f"no camera {camera!r}; the session has {', '.join(self.cameras)}")
        if capture_ts >= self._received_until[camera]:  # a clock going back is refused by ``add``
            self._received_until[camera] = capture_ts
            self._in_analysis[camera].append(capture_ts)
        return self._decide(now)

    def dropped(self, camera: str, capture_ts: float, now: float) -> list[FrameGroup[T]]:
        """``camera``'s stream dropped its frame of ``capture_ts`` unanalysed; returns the groups decided.

        Raises:
            UnknownCameraError: ``camera`` is not one of the grouper's.
        """
        if camera not in self.sync:
            raise UnknownCameraError(f"no camera {camera!r}; the session has {', '.join(self.cameras)}")
        with contextlib.suppress(ValueError):
            self._in_analysis[camera].remove(capture_ts)
        return self._decide(now)

    def choose(self, camera: str, waiting: Sequence[float]) -> int:
        """Which of ``camera``'s waiting frames (capture times, arrival order) to analyse next:
        the index of the moment the session chose (module doc).  The frames before it will be
        dropped (report them with ``dropped``).

        Raises:
            UnknownCameraError: ``camera`` is not one of the grouper's.
            ValueError: nothing is waiting.
        """
        if camera not in self.sync:
            raise UnknownCameraError(f"no camera {camera!r}; the session has {', '.join(self.cameras)}")
        if not waiting:
            raise ValueError("choose needs at least one waiting frame")
        tolerance = self.tolerance_s
        for index, ts in enumerate(waiting):
            if any(abs(ts - chosen) <= tolerance for chosen in self._chosen):
                return index
        others = [name for name in self._active if name != camera]
        index = len(waiting) - 1
        for candidate in range(len(waiting) - 1, -1, -1):
            if all(self._holds(name, waiting[candidate], tolerance) for name in others):
                index = candidate
                break
        self._chosen.append(waiting[index])
        return index

    def _holds(self, camera: str, capture_ts: float, tolerance: float) -> bool:
        """``camera`` received a frame of ``capture_ts`` it has neither dropped nor seen grouped."""
        return any(abs(t - capture_ts) <= tolerance for t in self._in_analysis[camera]) or any(
            abs(f.capture_ts - capture_ts) <= tolerance for f in self._pending[camera]
        )

    def _settle(self, camera: str, capture_ts: float) -> None:
        """Frames of ``camera`` up to ``capture_ts`` are no longer in analysis (this one was added)."""
        waiting = self._in_analysis[camera]
        while waiting and waiting[0] <= capture_ts:
            waiting.popleft()

    def _cannot_send(self, camera: str, end: float) -> bool:
        """``camera`` will send no frame captured at or before ``end``: it received a later one and
        has none up to ``end`` in analysis (only known for streams that report their frames)."""
        waiting = self._in_analysis[camera]
        return self._received_until[camera] > end and not (waiting and waiting[0] <= end)

    def expire(self, now: float) -> list[FrameGroup[T]]:
        """The groups whose deadline passed by ``now`` (call it when ``next_deadline`` comes)."""
        return self._decide(now)

    def next_deadline(self) -> float | None:
        """When the oldest pending frame's group times out (arrival clock); None when none waits."""
        firsts = [q[0].arrived for q in self._pending.values() if q]
        return min(firsts) + self.deadline_s if firsts else None

    def add_camera(self, camera: str) -> None:
        """Groups wait for ``camera`` from now on (its stream joined).

        Raises:
            UnknownCameraError: not one of the grouper's cameras.
        """
        if camera not in self.sync:
            raise UnknownCameraError(f"no camera {camera!r}; the session has {', '.join(self.cameras)}")
        self._active.add(camera)

    def leave(self, camera: str, now: float) -> list[FrameGroup[T]]:
        """``camera`` sends no more (its stream ended): groups stop waiting for it."""
        self._active.discard(camera)
        self._in_analysis[camera].clear()
        return self._decide(now)

    def flush(self) -> list[FrameGroup[T]]:
        """Every pending frame, grouped as well as it can be (the session ends)."""
        groups: list[FrameGroup[T]] = []
        while self.pending:
            groups.append(self._take(timed_out=True))
        self._chosen.clear()
        return groups

    def _decide(self, now: float) -> list[FrameGroup[T]]:
        groups: list[FrameGroup[T]] = []
        while self.pending:
            start = min(q[0].capture_ts for q in self._pending.values() if q)
            end = start + self.tolerance_s
            undecided = [
                name
                for name in self._active
                # has neither a member nor a later frame yet, and may still send a member
                if not self._pending[name] and not self._cannot_send(name, end)
            ]
            if undecided:
                oldest = min(q[0].arrived for q in self._pending.values() if q and q[0].capture_ts <= end)
                if now - oldest < self.deadline_s:
                    break
                groups.append(self._take(timed_out=True))
            else:
                groups.append(self._take(timed_out=False))
        return groups

    def _take(self, timed_out: bool) -> FrameGroup[T]:
        start = min(q[0].capture_ts for q in self._pending.values() if q)
        end = start + self.tolerance_s
        frames = {name: q.popleft() for name, q in self._pending.items() if q and q[0].capture_ts <= end}
        if any(chosen <= end for chosen in self._chosen):  # their groups went out: nobody joins them now
            self._chosen = deque((c for c in self._chosen if c > end), maxlen=CHOSEN_WINDOW)
        first = min(f.arrived for f in frames.values())
        lateness = {name: f.arrived - first for name, f in frames.items()}
        missing = tuple(name for name in self.cameras if name not in frames)
        for name, late in lateness.items():
            state = self.sync[name]
            state.grouped += 1
            state.lateness_total_s += late
            state.lateness_max_s = max(state.lateness_max_s, late)
        for name in missing:
            self.sync[name].missed += 1
        return FrameGroup(start, frames, missing, lateness, timed_out)
