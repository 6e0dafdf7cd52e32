"""Recorded sessions: list and get them, their reps, a summary (JSON), a reps CSV and an angle plot (PNG)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from pose_analyzer.biomechanics.angles import ANGLE_NAMES
from pose_analyzer.output import FaultOut, RepOut, finite
from pose_analyzer.report import AngleHistory, angle_plot_png
from pose_analyzer.resources import DatabaseDep
from pose_analyzer.storage import (
    AnglePoint,
    Database,
    RepInfo,
    SessionInfo,
    SessionNotFoundError,
    angle_series,
    get_session,
    list_reps,
    list_sessions,
    session_summary,
    start_session,
)
from pose_analyzer.types import RepRecord
from service_kit.errors import InvalidInputError, NotFoundError
from service_kit.ops import require_api_key

router = APIRouter(prefix="/api/sessions", tags=["sessions"], dependencies=[Depends(require_api_key)])

REP_CSV_COLUMNS: tuple[str, ...] = (
    "stream_id",
    "track_id",
    "exercise",
    "index",
    "start_s",
    "end_s",
    "range_of_motion_deg",
    "tempo_s",
    "score",
    "fault_codes",
)
T = TypeVar("T")


_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no such session"}}


class StreamOut(BaseModel):
    stream_id: str
    backend: str
    started_at: datetime
    ended_at: datetime | None
    frames_received: int
    frames_processed: int
    frames_dropped: int
    status: str
    close_reason: str | None


class SessionOut(BaseModel):
    id: str
    created_at: datetime
    ended_at: datetime | None
    exercise: str | None
    status: str
    meta: dict[str, Any]
    streams: list[StreamOut]

    @classmethod
    def of(cls, info: SessionInfo) -> SessionOut:
        streams = [
            StreamOut(
                stream_id=s.stream_id,
                backend=s.backend,
                started_at=s.started_at,
                ended_at=s.ended_at,
                frames_received=s.frames_received,
                frames_processed=s.frames_processed,
                frames_dropped=s.frames_dropped,
                status=s.status,
                close_reason=s.close_reason,
            )
            for s in info.streams
        ]
        return cls(
            id=info.id,
            created_at=info.created_at,
            ended_at=info.ended_at,
            exercise=info.exercise,
            status=info.status,
            meta=info.meta,
            streams=streams,
        )


class StoredRepOut(RepOut):
    """A stored rep (``output.RepOut``) with its stream and track; ``start_s``/``end_s`` are
    seconds since its stream's first analysed frame."""

    stream_id: str
    track_id: int

    @classmethod
    def stored(cls, rep: RepInfo) -> StoredRepOut:
        return cls(
            stream_id=rep.stream_id,
            track_id=rep.track_id,
            exercise=rep.exercise,
            index=rep.index,
            start_s=rep.start_s,
            end_s=rep.end_s,
            range_of_motion_deg=finite(rep.range_of_motion_deg),
            tempo_s=finite(rep.tempo_s),
            score=finite(rep.score),
            faults=[FaultOut(code=f.code, message=f.message, weight=f.weight) for f in rep.faults],
        )


class FaultCountOut(BaseModel):
    code: str
    message: str
    count: int


class ExerciseSummaryOut(BaseModel):
    exercise: str
    reps: int
    mean_score: float | None
    mean_tempo_s: float
    min_range_of_motion_deg: float
    mean_range_of_motion_deg: float
    max_range_of_motion_deg: float
    common_faults: list[FaultCountOut]


class SessionSummaryOut(BaseModel):
    session: SessionOut
    exercises: list[ExerciseSummaryOut]


def _read(database: Database, session_id: str, read: Callable[[Session], T]) -> T:
    """Run ``read(db)`` in a session; an unknown session id becomes a 404."""
    try:
        with database.session() as db:
            return read(db)
    except SessionNotFoundError as exc:
        raise NotFoundError(f"no session {session_id!r}", {"session_id": session_id}) from exc


@router.get("", summary="Recorded sessions, newest first")
def sessions(
    database: DatabaseDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> list[SessionOut]:
    with database.session() as db:
        return [SessionOut.of(s) for s in list_sessions(db, limit=limit, offset=offset)]


class NewSessionIn(BaseModel):
    """A session that cameras join by its id (``start.session_id`` or the stream URL's ``?session_id=``)."""

    model_config = ConfigDict(extra="forbid")
    exercise: str | None = Field(default=None, max_length=64)
    meta: dict[str, Any] = Field(default_factory=dict, max_length=32)


@router.post("", status_code=201, summary="Open a session for several cameras")
def create_session(database: DatabaseDep, body: NewSessionIn) -> SessionOut:
    with database.session() as db:
        session_id = start_session(db, exercise=body.exercise, meta=body.meta)
        return SessionOut.of(get_session(db, session_id))


@router.get("/{session_id}", summary="One session with its streams", responses=_NOT_FOUND)
def session(database: DatabaseDep, session_id: str) -> SessionOut:
    return SessionOut.of(_read(database, session_id, lambda db: get_session(db, session_id)))


@router.get("/{session_id}/reps", summary="Every rep of a session", responses=_NOT_FOUND)
def reps(database: DatabaseDep, session_id: str) -> list[StoredRepOut]:
    return [StoredRepOut.stored(r) for r in _read(database, session_id, lambda db: list_reps(db, session_id))]


@router.get(
    "/{session_id}/summary", summary="Per exercise: reps, scores, tempo, faults", responses=_NOT_FOUND
)
def summary(database: DatabaseDep, session_id: str) -> SessionSummaryOut:
    def read(db: Session) -> SessionSummaryOut:
        info = get_session(db, session_id)
        exercises = [
            ExerciseSummaryOut(
                exercise=e.exercise,
                reps=e.reps,
                mean_score=e.mean_score,
                mean_tempo_s=e.mean_tempo_s,
                min_range_of_motion_deg=e.min_range_of_motion_deg,
                mean_range_of_motion_deg=e.mean_range_of_motion_deg,
                max_range_of_motion_deg=e.max_range_of_motion_deg,
                common_faults=[
                    FaultCountOut(code=f.code, message=f.message, count=f.count) for f in e.common_faults
                ],
            )
            for e in session_summary(db, session_id)
        ]
        return SessionSummaryOut(session=SessionOut.of(info), exercises=exercises)

    return _read(database, session_id, read)


def reps_csv(found: list[RepInfo]) -> str:
    """The reps as CSV text with a ``REP_CSV_COLUMNS`` header; fault codes joined by ``;``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(REP_CSV_COLUMNS)
    for r in found:
        writer.writerow(
            [
                r.stream_id,
                r.track_id,
                r.exercise,
                r.index,
                f"{r.start_s:.3f}",
                f"{r.end_s:.3f}",
                f"{r.range_of_motion_deg:.2f}",
                f"{r.tempo_s:.3f}",
                "" if math.isnan(r.score) else f"{r.score:.2f}",
                ";".join(f.code for f in r.faults),
            ]
        )
    return buffer.getvalue()


@router.get(
    "/{session_id}/reps.csv",
    summary="Every rep of a session as a CSV download",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}, **_NOT_FOUND},
)
def reps_csv_download(database: DatabaseDep, session_id: str) -> Response:
    found = _read(database, session_id, lambda db: list_reps(db, session_id))
    return Response(
        reps_csv(found),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="session-{session_id[:36]}-reps.csv"'},
    )


def history_of(points: list[AnglePoint]) -> AngleHistory:
    """Per-second means as an AngleHistory, each sample at the middle of its second."""
    history = AngleHistory()
    for p in points:
        history.series[p.track_id][p.angle].append((p.second + 0.5, p.mean_deg))
    return history


def reps_by_track(found: list[RepInfo]) -> dict[int | None, list[RepRecord]]:
    """Stored reps in the shape the plot takes (times relative to the stream's first frame)."""
    by_track: dict[int | None, list[RepRecord]] = {}
    for r in found:
        by_track.setdefault(r.track_id, []).append(
            RepRecord(
                exercise=r.exercise,
                index=r.index,
                start_time=r.start_s,
                end_time=r.end_s,
                range_of_motion_deg=r.range_of_motion_deg,
                tempo_s=r.tempo_s,
                score=r.score,
                faults=list(r.faults),
            )
        )
    return by_track


@router.get(
    "/{session_id}/plot.png",
    summary="Joint angles over time (per-second means) with reps shaded, as a PNG",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}},
        404: {"description": "no such session or stream, or nothing recorded"},
        422: {"description": "unknown angle name"},
    },
)
def plot(
    database: DatabaseDep,
    session_id: str,
    stream: Annotated[str | None, Query(description="client stream label; default: the first stream")] = None,
    angle: Annotated[
        list[str] | None, Query(description="angle names; default: the one that moves most")
    ] = None,
    width_px: Annotated[int, Query(ge=200, le=4000)] = 1200,
    height_px: Annotated[int, Query(ge=150, le=3000)] = 500,
) -> Response:
    unknown = sorted(set(angle or ()) - set(ANGLE_NAMES))
    if unknown:
        raise InvalidInputError(
            f"unknown angle {', '.join(map(repr, unknown))}; valid: {', '.join(ANGLE_NAMES)}",
            {"valid": list(ANGLE_NAMES)},
        )

    def read(db: Session) -> tuple[str, list[AnglePoint], list[RepInfo]]:
        info = get_session(db, session_id)
        labels = [s.stream_id for s in info.streams]
        if stream is not None and stream not in labels:
            raise NotFoundError(f"session {session_id!r} has no stream {stream!r}", {"streams": labels})
        if not labels:
            raise NotFoundError(f"session {session_id!r} has no streams to plot")
        chosen = stream if stream is not None else labels[0]
        points = angle_series(db, session_id, chosen, angles=angle)
        return chosen, points, [r for r in list_reps(db, session_id) if r.stream_id == chosen]

    chosen, points, found = _read(database, session_id, read)
    if not points:
        raise NotFoundError(f"no angles recorded for stream {chosen!r} of session {session_id!r}")
    history = history_of(points)
    names = angle or [history.widest_angle() or points[0].angle]
    png = angle_plot_png(
        history,
        names,
        reps_by_track(found),
        title=f"session {session_id[:8]}, stream {chosen}: {', '.join(names)} (shaded: reps)",
        size_px=(width_px, height_px),
    )
    return Response(png, media_type="image/png")
