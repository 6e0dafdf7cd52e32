"""A stream's place in a 3D session: the ``start`` message named a rig and its camera.

``join_3d`` loads the rig (``/api/rigs``), opens or joins the session's ``Live3DSession``
(``multiview.session3d``, held by the hub under the database session id) and returns a
``Joined3D``: the stream session calls it with each analysed frame and puts the returned
``Pose3DOut`` in the frame's answer; the connection calls ``leave`` when the stream ends.
A missing rig or camera, a camera already streaming, or a clock that goes back end this
stream only, with a 1008 close and a reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from pose_analyzer.metrics import StreamMetrics
from pose_analyzer.multiview.calibration_io import rig_from_dict
from pose_analyzer.multiview.moment3d import view_of
from pose_analyzer.multiview.rig import CameraRig, RigError
from pose_analyzer.multiview.session3d import CameraTakenError, Live3DSession, Live3DSessions
from pose_analyzer.multiview.sync import ClockWentBackwardsError
from pose_analyzer.output import Pose3DOut
from pose_analyzer.storage import Database, StorageError
from pose_analyzer.storage.rigs import Point3DFrame, RigNotFoundError, add_frames_3d, get_rig, next_frame_seq
from pose_analyzer.streaming.errors import InvalidCaptureTimeError, StorageFailedError, StreamPolicyError
from pose_analyzer.types import FrameAnalysis
from service_kit.errors import unexpected_error

log = logging.getLogger(__name__)


class Stream3DError(StreamPolicyError):
    """A 3D stream that cannot join its session (unknown rig or camera, camera taken) (422, 1008)."""

    status_code = 422
    code = "invalid_3d_stream"


def load_rig(database: Database, name: str) -> tuple[CameraRig, int]:
    """The stored rig ``name``.

    Raises:
        RigNotFoundError: no such rig.
    """
    with database.session() as db:
        stored = get_rig(db, name)
    return rig_from_dict(stored.rig), stored.camera_count


def _store(database: Database, session_id: str, rows: list[Point3DFrame]) -> None:
    """Raises: StorageError (the database refused the rows)."""
    try:
        with database.session() as db:
            add_frames_3d(db, session_id, rows)
    except SQLAlchemyError as exc:
        raise StorageError(f"could not store the 3D moments of session {session_id}: {exc}") from exc


def _first_seq(database: Database, session_id: str) -> int:
    with database.session() as db:
        return next_frame_seq(db, session_id)


@dataclass(slots=True)
class Joined3D:
    """One stream as one camera of a live 3D session."""

    sessions: Live3DSessions
    live: Live3DSession
    camera: str
    stream_id: str

    async def __call__(self, capture_ts: float, analysis: FrameAnalysis) -> Pose3DOut | None:
        """The frame's moment (None when its group had fewer than two cameras).

        Raises:
            InvalidCaptureTimeError: the camera's capture time went back.
        """
        view = view_of(analysis, self.live.image_size(self.camera), every_person=self.live.multi_person)
        try:
            moment = await self.live.submit(self.camera, capture_ts, view)
        except ClockWentBackwardsError as exc:
            raise InvalidCaptureTimeError(str(exc)) from None
        except StorageError as exc:
            request_id, _ = unexpected_error(exc, f"3D session {self.live.key}: commit of a rep")
            raise StorageFailedError(
                f"the session's 3D rep could not be saved (request id {request_id})"
            ) from exc
        return Pose3DOut.of(moment) if moment is not None else None

    def choose(self, waiting: Sequence[float]) -> int:
        """Which waiting frame (capture times, arrival order) the stream analyses next: the
        moment the session's cameras analyse together (``FrameGrouper.choose``)."""
        return self.live.choose(self.camera, waiting)

    def received(self, capture_ts: float) -> None:
        """The stream received a frame captured at ``capture_ts`` (not analysed yet)."""
        self.live.received(self.camera, capture_ts)

    def dropped(self, capture_ts: float) -> None:
        """The stream dropped its frame of ``capture_ts`` unanalysed (a moment the session skipped)."""
        self.live.dropped(self.camera, capture_ts)

    async def leave(self) -> None:
        """The stream ended: the session stops waiting for its camera (stored when the last leaves)."""
        try:
            await self.sessions.leave(self.live.key, self.camera, self.stream_id)
        except Exception:
            log.exception("a 3D session's moments could not be stored", extra={"session": self.live.key})


async def join_3d(
    sessions: Live3DSessions,
    database: Database | None,
    metrics: StreamMetrics,
    *,
    key: str,
    rig_name: str | None,
    camera: str | None,
    stream_id: str,
    exercise: str | None,
    deadline_s: float,
    multi_person: bool = False,
) -> Joined3D:
    """Join (or open) the 3D session ``key`` as ``camera`` of ``rig_name``; ``multi_person``
    (the stream's backend reports every person) makes a new session associate people across
    cameras.

    Raises:
        Stream3DError: rig or camera missing or unknown, another rig in that session, camera taken.
    """
    if rig_name is None or camera is None:
        raise Stream3DError("a 3D stream names both rig and camera in its start message", "rig_and_camera")
    if database is None:
        raise Stream3DError("3D sessions need the service's database (rigs are stored there)", "no_database")
    live = sessions.get(key)
    if live is None or live.rig_name != rig_name:
        try:
            rig, _ = await asyncio.to_thread(load_rig, database, rig_name)
        except RigNotFoundError as exc:
            raise Stream3DError(f"{exc}; upload it with PUT /api/rigs/{rig_name}", "unknown_rig") from None
        first = await asyncio.to_thread(_first_seq, database, key)
        live = Live3DSession(
            key,
            rig_name,
            rig,
            exercise=exercise,
            deadline_s=deadline_s,
            store=lambda rows: _store(database, key, rows),
            observe=metrics.observe_3d,
            on_group=metrics.count_group,
            moments=first,
            multi_person=multi_person,
        )
    try:
        live.rig.camera(camera)  # checked before the session is opened for it
        live = sessions.open(live)
        live.join(camera, stream_id)
    except RigError as exc:
        code = "unknown_camera" if "no camera" in str(exc) else "rig_mismatch"
        raise Stream3DError(str(exc), code) from None
    except CameraTakenError as exc:
        raise Stream3DError(str(exc), "camera_busy") from None
    return Joined3D(sessions, live, camera, stream_id)
