"""A live 3D session: the streams of one session, each a camera of one rig, analysed as one body.

Each stream analyses its own frames in 2D as before; then it hands the frame's person (single
person first: the stream's first confirmed person) to the session's ``Live3DSession`` and waits
for the frame's group (``sync.FrameGrouper``: all cameras present, a camera known to have dropped
that moment, or the deadline).  The cameras drop the same moments when they cannot keep up: each
stream keeps a few frames waiting and analyses the one ``choose`` picks (the moment the others
analyse), so groups stay complete under load.  A group seen by two cameras or more is triangulated
(``triangulation.Triangulator``), its limbs refined with the person's learnt segment lengths
(``bones.BoneLengthPrior``), its trajectory smoothed (``TrajectorySmoother3D``), its 3D
joint angles and measures taken (``biomechanics3d``) and fed to the session's own rep counter
(the exercise YAML unchanged); every stream in the group gets the
same ``Moment3D`` with its answer.  Moments are stored as ``frames_3d`` rows, in batches, off
the event loop; a moment that completed a rep is committed before it is announced.

Several people (a multi-person backend, ``multi_person``): every stream hands all its frame's
people; the group's people are associated across cameras, triangulated and given ids that
last (``people3d.LivePeople3D``), each smoothed and analysed on its own; the
moment's top-level points, angles and reps are those of its first person (the lowest id: the
one seen longest), ``people`` lists everyone.

Keypoints are scaled from the analysed frame's size to the rig camera's ``image_size``: clients
may send downscaled frames of a camera calibrated at full resolution.  Use from one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from pose_analyzer.exercises.counter import RepCounter
from pose_analyzer.exercises.definition import load_exercise
from pose_analyzer.multiview.biomechanics3d import TrajectorySmoother3D, analyse_pose_3d
from pose_analyzer.multiview.bones import BoneLengthPrior
from pose_analyzer.multiview.moment3d import Moment3D, View
from pose_analyzer.multiview.people3d import LivePeople3D, PersonMoment
from pose_analyzer.multiview.rig import CameraRig, RigError
from pose_analyzer.multiview.sync import FrameGroup, FrameGrouper
from pose_analyzer.multiview.triangulation import Triangulator
from pose_analyzer.storage.rigs import Point3DFrame
from pose_analyzer.types import RepRecord

log = logging.getLogger(__name__)
FloatArray = npt.NDArray[np.float64]
# Moments stored in one commit (at the latest on a rep, or when the session ends).
STORE_BATCH = 30


class CameraTakenError(ValueError):
    """Another stream of the session already is that camera."""


@dataclass(slots=True)
class _Waiting:
    future: asyncio.Future[Moment3D | None]
    view: View


@dataclass(slots=True)
class Live3DSession:
    """The 3D side of one session (see the module doc)."""

    key: str
    rig_name: str
    rig: CameraRig
    exercise: str | None = None
    deadline_s: float = 0.5
    tolerance_s: float | None = None
    # Blocking store of moments (``storage.rigs.add_frames_3d`` in a unit of work), run off the loop.
    store: Callable[[list[Point3DFrame]], None] | None = None
    # Called with (triangulation seconds, mean reprojection px) per triangulated moment.
    observe: Callable[[float, float], None] | None = None
    # Called with each group's outcome ("complete": every joined camera, "partial", "single")
    # and its cameras' lateness (s).
    on_group: Callable[[str, Iterable[float]], None] | None = None
    # Associate several people across cameras (a multi-person backend) instead of the first one.
    multi_person: bool = False
    streams: dict[str, str] = field(default_factory=dict)  # camera -> stream id
    moments: int = 0
    _grouper: FrameGrouper[_Waiting] = field(init=False)
    _counter: RepCounter | None = field(init=False)
    _timer: asyncio.TimerHandle | None = field(init=False, default=None)
    _concluding: set[asyncio.Task[None]] = field(init=False, default_factory=set)
    _unstored: list[Point3DFrame] = field(init=False, default_factory=list)
    _storing: asyncio.Lock = field(init=False, default_factory=asyncio.Lock)
    # One triangulator per set of cameras seen together (constants prepared once).
    _triangulators: dict[tuple[str, ...], Triangulator] = field(init=False, default_factory=dict)
    _smoother: TrajectorySmoother3D = field(init=False, default_factory=TrajectorySmoother3D)
    # The person's limb lengths, learnt from the well-triangulated groups, refine every group
    # (single-person sessions; several people are triangulated by ``_people``).
    _bones: BoneLengthPrior = field(init=False, default_factory=BoneLengthPrior)
    _people: LivePeople3D | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._grouper = FrameGrouper(self.rig.names, self.tolerance_s, self.deadline_s, active=())
        self._counter = RepCounter(load_exercise(self.exercise)) if self.exercise else None
        if self.multi_person:
            self._people = LivePeople3D(self.rig)

    def join(self, camera: str, stream_id: str) -> None:
        """``stream_id`` is ``camera`` of the rig from now on.

        Raises:
            RigError: no such camera in the rig.
            CameraTakenError: another open stream is that camera.
        """
        self.rig.camera(camera)
        other = self.streams.get(camera)
        if other is not None and other != stream_id:
            raise CameraTakenError(f"camera {camera!r} of rig {self.rig_name!r} is already stream {other!r}")
        self.streams[camera] = stream_id
        self._grouper.add_camera(camera)

    def image_size(self, camera: str) -> tuple[int, int]:
        return self.rig.camera(camera).image_size

    @property
    def sync(self) -> FrameGrouper[_Waiting]:
        return self._grouper

    async def submit(self, camera: str, capture_ts: float, view: View) -> Moment3D | None:
        """Hand one frame's view in; returns its moment once its group is decided (None when
        its group had fewer than two cameras).

        Raises:
            ClockWentBackwardsError: ``capture_ts`` earlier than this camera's previous frame's.
        """
        future: asyncio.Future[Moment3D | None] = asyncio.get_running_loop().create_future()
        groups = self._grouper.add(camera, capture_ts, _Waiting(future, view), time.monotonic())
        await self._conclude(groups)
        self._arm()
        return await future

    def choose(self, camera: str, waiting: Sequence[float]) -> int:
        """Which of ``camera``'s waiting frames to analyse next: see ``FrameGrouper.choose``."""
        return self._grouper.choose(camera, waiting)

    def received(self, camera: str, capture_ts: float) -> None:
        """``camera``'s stream received a frame (before analysing it): see ``FrameGrouper.received``."""
        self._decided(self._grouper.received(camera, capture_ts, time.monotonic()))

    def dropped(self, camera: str, capture_ts: float) -> None:
        """``camera``'s stream dropped a frame unanalysed: its group need not wait for it."""
        self._decided(self._grouper.dropped(camera, capture_ts, time.monotonic()))

    def _decided(self, groups: list[FrameGroup[_Waiting]]) -> None:
        """Conclude ``groups`` decided outside ``submit`` (called from a stream's receiving side)."""
        if not groups:
            return
        task = asyncio.get_running_loop().create_task(self._conclude(groups))
        self._concluding.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._concluding.discard)
        self._arm()

    async def leave(self, camera: str, stream_id: str) -> bool:
        """The stream of ``camera`` ended; returns True when no stream is left (store the rest)."""
        if self.streams.get(camera) == stream_id:
            del self.streams[camera]
            await self._conclude(self._grouper.leave(camera, time.monotonic()))
        if self.streams:
            self._arm()
            await self.flush()  # what this stream was told of is stored before it hears "stopped"
            return False
        if self._timer is not None:
            self._timer.cancel()
        await self._conclude(self._grouper.flush())
        await self.flush()
        return True

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        due = self._grouper.next_deadline()
        if due is None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, due - time.monotonic())
        self._timer = loop.call_later(delay, lambda: loop.create_task(self._expire()))

    async def _expire(self) -> None:
        self._timer = None
        await self._conclude(self._grouper.expire(time.monotonic()))
        self._arm()

    async def _conclude(self, groups: list[FrameGroup[_Waiting]]) -> None:
        for group in groups:
            moment = None
            if group.triangulable:
                try:
                    moment = self._moment(group)
                except Exception:  # one bad moment must not leave every stream of the group waiting
                    log.exception("a 3D moment could not be triangulated", extra={"session": self.key})
            if self.on_group is not None:
                whole = all(name in group.frames for name in self.streams)
                outcome = "single" if not group.triangulable else "complete" if whole else "partial"
                self.on_group(outcome, group.lateness_s.values())
            failure: BaseException | None = None
            if moment is not None:
                self._unstored.append(moment.row())
                if moment.rep is not None or len(self._unstored) >= STORE_BATCH:
                    try:
                        await self.flush()  # a rep is committed before any stream announces it
                    except Exception as exc:  # every stream of the group hears it, none waits on
                        failure = exc
            for frame in group.frames.values():
                future = frame.payload.future
                if future.done():
                    continue
                if failure is None:
                    future.set_result(moment)
                else:
                    future.set_exception(failure)

    def _moment(self, group: FrameGroup[_Waiting]) -> Moment3D | None:
        if self._people is not None:
            return self._moment_people(group, self._people)
        seen = [
            (name, f.payload.view.keypoints)
            for name, f in group.frames.items()
            if f.payload.view.keypoints is not None
        ]
        if len(seen) < 2:
            return None
        started = time.perf_counter()
        stacked = np.stack([k for _, k in seen])
        names = tuple(name for name, _ in seen)
        triangulator = self._triangulators.get(names)
        if triangulator is None:
            triangulator = self._triangulators[names] = Triangulator(self.rig, names)
        result = self._bones(triangulator(stacked[:, :, :2], stacked[:, :, 2]), triangulator)
        # Points, angles and reps from the smoothed trajectory, as a 2D stream's keypoints are
        # smoothed; the reprojection errors are those of the triangulation itself.
        smoothed = self._smoother.update(result.points, group.capture_ts)
        analysis = analyse_pose_3d(smoothed)
        person = PersonMoment(0, names, smoothed, result.reprojection_px, analysis)
        return self._conclude_moment(group, names, [person], started)

    def _moment_people(self, group: FrameGroup[_Waiting], live: LivePeople3D) -> Moment3D | None:
        """The multi-person moment (module doc); None when nobody was seen by two cameras."""
        views = {name: f.payload.view.people for name, f in group.frames.items() if f.payload.view.people}
        if len(views) < 2:
            return None
        started = time.perf_counter()
        people = live({name: np.stack(p) for name, p in views.items()}, group.capture_ts)
        names = tuple(n for n in self.rig.names if n in views)
        return self._conclude_moment(group, names, people, started) if people else None

    def _conclude_moment(
        self,
        group: FrameGroup[_Waiting],
        names: tuple[str, ...],
        people: list[PersonMoment],
        started: float,
    ) -> Moment3D:
        """The moment of ``people`` (the first one's reps counted), numbered, timed and observed."""
        first = people[0]
        rep = None
        if self._counter is not None:
            rep = self._counter.update(group.capture_ts, first.angles, first.analysis.measures)
        seconds = time.perf_counter() - started
        moment = Moment3D(
            seq=self.moments,
            capture_ts=group.capture_ts,
            cameras=names,
            missing=tuple(n for n in self.rig.names if n not in names),
            lateness_s=dict(group.lateness_s),
            points=first.points,
            reprojection_px=first.reprojection_px,
            angles=first.angles,
            rep_count=self._counter.count if self._counter is not None else 0,
            phase=self._counter.phase if self._counter is not None else "none",
            rep=rep,
            people=tuple(people),
        )
        self.moments += 1
        if self.observe is not None:
            self.observe(seconds, moment.mean_reprojection_px)
        return moment

    async def flush(self) -> None:
        """Store the moments not yet stored (one commit, off the event loop)."""
        async with self._storing:
            rows, self._unstored = self._unstored, []
            if rows and self.store is not None:
                await asyncio.to_thread(self.store, rows)

    def reps(self) -> list[RepRecord]:
        return list(self._counter.reps) if self._counter is not None else []


class Live3DSessions:
    """The open 3D sessions of a service, by key (the database session id); use from one loop."""

    def __init__(self) -> None:
        self._open: dict[str, Live3DSession] = {}

    def get(self, key: str) -> Live3DSession | None:
        return self._open.get(key)

    def open(self, session: Live3DSession) -> Live3DSession:
        """``session``, or the one already open under its key (which must use the same rig).

        Raises:
            RigError: the open session uses another rig.
        """
        current = self._open.setdefault(session.key, session)
        if current.rig_name != session.rig_name:
            raise RigError(f"session {session.key!r} uses rig {current.rig_name!r}, not {session.rig_name!r}")
        return current

    async def leave(self, key: str, camera: str, stream_id: str) -> None:
        session = self._open.get(key)
        if session is not None and await session.leave(camera, stream_id):
            with contextlib.suppress(KeyError):
                del self._open[key]

    def __len__(self) -> int:
        return len(self._open)
