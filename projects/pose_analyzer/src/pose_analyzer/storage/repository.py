"""Reading and writing sessions, streams and reps; plain functions over a SQLAlchemy ``Session``.

Functions do not commit: the caller owns the unit of work (``with database.session() as s:``).
Reads return frozen dataclasses, not ORM objects, so results stay valid after the session closes
and can go straight into a response model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session

from pose_analyzer.storage.errors import SessionNotFoundError
from pose_analyzer.storage.info import (
    AnglePoint,
    ExerciseSummary,
    FaultCount,
    RepInfo,
    SessionInfo,
    StreamInfo,
)
from pose_analyzer.storage.models import (
    SESSION_STATUSES,
    AnalysisSession,
    AngleSecond,
    Repetition,
    RepFault,
    StreamRecord,
    utc_now,
)
from pose_analyzer.types import Fault, RepRecord

INTERRUPTED_REASON = "the process stopped while the stream was open; data not yet flushed was lost"


def stream_info(row: StreamRecord) -> StreamInfo:
    """The plain-data view of a stream row."""
    return StreamInfo(
        id=row.id,
        session_id=row.session_id,
        stream_id=row.stream_id,
        backend=row.backend,
        started_at=row.started_at,
        ended_at=row.ended_at,
        frames_received=row.frames_received,
        frames_processed=row.frames_processed,
        frames_dropped=row.frames_dropped,
        status=row.status,
        close_reason=row.close_reason,
    )


def _session_info(row: AnalysisSession) -> SessionInfo:
    return SessionInfo(
        id=row.id,
        created_at=row.created_at,
        ended_at=row.ended_at,
        exercise=row.exercise,
        status=row.status,
        meta=dict(row.meta),
        streams=tuple(stream_info(s) for s in row.streams),
    )


def _require_session(db: Session, session_id: str) -> AnalysisSession:
    row = db.get(AnalysisSession, session_id)
    if row is None:
        raise SessionNotFoundError(session_id)
    return row


def start_session(db: Session, *, exercise: str | None = None, meta: dict[str, Any] | None = None) -> str:
    """Create an open session and return its id (a UUID string)."""
    row = AnalysisSession(exercise=exercise, meta=dict(meta or {}), status="open", created_at=utc_now())
    db.add(row)
    db.flush()
    return row.id


def end_session(db: Session, session_id: str, status: str = "completed") -> None:
    """Mark a session ended now with ``status`` ("completed", "failed" or "interrupted").

    Raises:
        ValueError: unknown status.
        SessionNotFoundError: no such session.
    """
    if status not in SESSION_STATUSES or status == "open":
        raise ValueError(f"a session ends as 'completed', 'failed' or 'interrupted', not {status!r}")
    row = _require_session(db, session_id)
    row.status = status
    row.ended_at = utc_now()


def add_stream(db: Session, session_id: str, stream_id: str, backend: str) -> int:
    """Register an open stream (client label ``stream_id``) in a session; returns its row id.

    Raises:
        ValueError: empty label or backend.
        SessionNotFoundError: no such session.
    """
    if not stream_id.strip():
        raise ValueError("stream_id (the client's label) must not be empty")
    if not backend.strip():
        raise ValueError("backend must not be empty")
    _require_session(db, session_id)
    row = StreamRecord(session_id=session_id, stream_id=stream_id, backend=backend, status="open")
    db.add(row)
    db.flush()
    return row.id


def check_rep(rep: RepRecord) -> None:
    """Refuse a rep whose numbers are not finite (SQLite would store NaN as NULL, breaking NOT NULL).

    Raises:
        ValueError: naming the first bad field.
    """
    for name in ("start_time", "end_time", "range_of_motion_deg", "tempo_s"):
        value = getattr(rep, name)
        if not math.isfinite(value):
            raise ValueError(f"rep {rep.index} of {rep.exercise!r}: {name} is {value}, not a finite number")
    if math.isinf(rep.score):
        raise ValueError(f"rep {rep.index} of {rep.exercise!r}: score is {rep.score}")
    for fault in rep.faults:
        if not fault.code or not math.isfinite(fault.weight):
            raise ValueError(f"rep {rep.index} of {rep.exercise!r}: bad fault {fault!r}")


def rep_columns(stream_pk: int, track_id: int, rep: RepRecord, clock_origin_s: float) -> dict[str, Any]:
    """The ``repetitions`` row of ``rep`` (checked first, ``check_rep``), times relative to
    ``clock_origin_s``: one mapping for the ORM path and the one-statement path alike."""
    check_rep(rep)
    return {
        "stream_pk": stream_pk,
        "track_id": track_id,
        "exercise": rep.exercise,
        "rep_index": rep.index,
        "start_s": rep.start_time - clock_origin_s,
        "end_s": rep.end_time - clock_origin_s,
        "range_of_motion_deg": rep.range_of_motion_deg,
        "tempo_s": rep.tempo_s,
        "score": None if math.isnan(rep.score) else rep.score,
    }


def record_rep(
    db: Session, stream_pk: int, track_id: int, rep: RepRecord, *, clock_origin_s: float = 0.0
) -> None:
    """Add one rep (and its faults) to stream ``stream_pk``; times are stored relative to ``clock_origin_s``.

    Raises:
        ValueError: non-finite numbers in the rep.
    """
    db.add(
        Repetition(
            **rep_columns(stream_pk, track_id, rep, clock_origin_s),
            faults=[RepFault(code=f.code, message=f.message, weight=f.weight) for f in rep.faults],
        )
    )


def mark_interrupted_streams(db: Session) -> int:
    """Mark every stream still "open" as "interrupted"; returns how many (``mark_interrupted``
    closes their sessions too).

    Call once at start-up, while this process is the database's only writer: a stream left open
    then belongs to a process that died before it could finish it.
    """
    statement = (
        update(StreamRecord)
        .where(StreamRecord.status == "open")
        .values(status="interrupted", close_reason=INTERRUPTED_REASON, ended_at=utc_now())
    )
    # An UPDATE's result is a cursor result, which knows how many rows it changed.
    result = cast("CursorResult[Any]", db.execute(statement))
    return result.rowcount


@dataclass(frozen=True, slots=True)
class Interrupted:
    """What start-up closed: streams and sessions a previous process left open."""

    streams: int
    sessions: int


def mark_interrupted(db: Session) -> Interrupted:
    """Close what a previous process left open: open streams become "interrupted" (what they
    committed stays), and so do the open sessions they belonged to and the open sessions a
    stream opened for itself (``meta["stream_id"]``) whose streams all ended (the process died
    between the stream's end and its session's).  Sessions made through the API with no open
    stream stay open: more cameras may still join them.

    Call once at start-up, while this process is the database's only writer.
    """
    broken = set(db.scalars(select(StreamRecord.session_id).where(StreamRecord.status == "open")))
    streams = mark_interrupted_streams(db)
    now = utc_now()
    sessions = 0
    for row in db.scalars(select(AnalysisSession).where(AnalysisSession.status == "open")):
        own_and_done = "stream_id" in row.meta and all(s.status != "open" for s in row.streams)
        if row.id in broken or own_and_done:
            row.status, row.ended_at = "interrupted", now
            sessions += 1
    return Interrupted(streams, sessions)


def list_sessions(db: Session, *, limit: int = 100, offset: int = 0) -> list[SessionInfo]:
    """Sessions, newest first."""
    if limit <= 0 or offset < 0:
        raise ValueError(f"limit must be > 0 and offset >= 0, got limit={limit}, offset={offset}")
    rows = db.scalars(
        select(AnalysisSession)
        .order_by(AnalysisSession.created_at.desc(), AnalysisSession.id)
        .limit(limit)
        .offset(offset)
    )
    return [_session_info(r) for r in rows]


def get_session(db: Session, session_id: str) -> SessionInfo:
    """One session with its streams.  Raises ``SessionNotFoundError``."""
    return _session_info(_require_session(db, session_id))


def list_reps(db: Session, session_id: str) -> list[RepInfo]:
    """Every rep of a session, by stream, track and index.  Raises ``SessionNotFoundError``."""
    _require_session(db, session_id)
    rows = db.execute(
        select(Repetition, StreamRecord.stream_id)
        .join(StreamRecord, Repetition.stream_pk == StreamRecord.id)
        .where(StreamRecord.session_id == session_id)
        .order_by(StreamRecord.id, Repetition.track_id, Repetition.rep_index)
    )
    return [
        RepInfo(
            stream_id=label,
            track_id=rep.track_id,
            exercise=rep.exercise,
            index=rep.rep_index,
            start_s=rep.start_s,
            end_s=rep.end_s,
            range_of_motion_deg=rep.range_of_motion_deg,
            tempo_s=rep.tempo_s,
            score=math.nan if rep.score is None else rep.score,
            faults=tuple(Fault(f.code, f.message, f.weight) for f in rep.faults),
        )
        for rep, label in rows
    ]


def session_summary(db: Session, session_id: str, *, top_faults: int = 3) -> list[ExerciseSummary]:
    """Per exercise: rep count, mean score and tempo, range of motion, the most frequent faults.

    Raises:
        SessionNotFoundError: no such session.
    """
    _require_session(db, session_id)
    in_session = select(StreamRecord.id).where(StreamRecord.session_id == session_id).scalar_subquery()
    per_exercise = db.execute(
        select(
            Repetition.exercise,
            func.count(Repetition.id),
            func.avg(Repetition.score),
            func.avg(Repetition.tempo_s),
            func.min(Repetition.range_of_motion_deg),
            func.avg(Repetition.range_of_motion_deg),
            func.max(Repetition.range_of_motion_deg),
        )
        .where(Repetition.stream_pk.in_(in_session))
        .group_by(Repetition.exercise)
        .order_by(Repetition.exercise)
    )
    fault_rows = db.execute(
        select(Repetition.exercise, RepFault.code, func.max(RepFault.message), func.count(RepFault.id))
        .join(Repetition, RepFault.rep_id == Repetition.id)
        .where(Repetition.stream_pk.in_(in_session))
        .group_by(Repetition.exercise, RepFault.code)
        .order_by(Repetition.exercise, func.count(RepFault.id).desc(), RepFault.code)
    )
    faults: dict[str, list[FaultCount]] = {}
    for exercise, code, message, count in fault_rows:
        faults.setdefault(exercise, []).append(FaultCount(code, message, int(count)))
    return [
        ExerciseSummary(
            exercise=exercise,
            reps=int(reps),
            mean_score=None if score is None else float(score),
            mean_tempo_s=float(tempo),
            min_range_of_motion_deg=float(rom_min),
            mean_range_of_motion_deg=float(rom_mean),
            max_range_of_motion_deg=float(rom_max),
            common_faults=tuple(faults.get(exercise, [])[:top_faults]),
        )
        for exercise, reps, score, tempo, rom_min, rom_mean, rom_max in per_exercise
    ]


def angle_series(
    db: Session,
    session_id: str,
    stream: str | None = None,
    *,
    track_id: int | None = None,
    angles: list[str] | None = None,
) -> list[AnglePoint]:
    """Per-second joint-angle aggregates of a session for plots, ordered by stream, track, angle, second.

    ``stream`` narrows to one client label, ``track_id`` to one person, ``angles`` to some names.

    Raises:
        SessionNotFoundError: no such session.
    """
    _require_session(db, session_id)
    # Plain columns, not ORM objects: a long stream has tens of thousands of points.
    query = (
        select(
            StreamRecord.stream_id,
            AngleSecond.track_id,
            AngleSecond.angle,
            AngleSecond.second,
            AngleSecond.mean_deg,
            AngleSecond.min_deg,
            AngleSecond.max_deg,
            AngleSecond.sample_count,
        )
        .join(StreamRecord, AngleSecond.stream_pk == StreamRecord.id)
        .where(StreamRecord.session_id == session_id)
    )
    if stream is not None:
        query = query.where(StreamRecord.stream_id == stream)
    if track_id is not None:
        query = query.where(AngleSecond.track_id == track_id)
    if angles is not None:
        query = query.where(AngleSecond.angle.in_(angles))
    query = query.order_by(StreamRecord.id, AngleSecond.track_id, AngleSecond.angle, AngleSecond.second)
    return [AnglePoint(*row) for row in db.execute(query)]
