"""The relational schema of what camera streams produced: sessions, streams, reps, faults, angle seconds.

Faults are rows of their own (``rep_faults``) rather than a JSON column on the rep: the session
summary's "most common faults" is then a portable ``GROUP BY code`` with an index behind it, where
JSON would need dialect-specific functions (``json_each`` in SQLite, ``jsonb_array_elements`` in
PostgreSQL) and could not be indexed the same way on both.

Times of day are timezone-aware UTC (``UTCDateTime``).  Times inside a stream (rep start/end, angle
seconds) are seconds since the stream's first analysed frame (``StreamRecord.clock_origin_s`` keeps
that frame's own timestamp), so reps and angle series of one stream share one clock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar
from uuid import uuid4

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

# "interrupted": the process ended (crash, SIGKILL, restart) while the stream (or one of the
# session's streams) was open; see repository.mark_interrupted.
SESSION_STATUSES = ("open", "completed", "failed", "interrupted")
STREAM_STATUSES = ("open", "completed", "failed", "interrupted")

# Stable constraint names, so migrations can drop or alter them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that goes in and comes out timezone-aware UTC on every backend.

    SQLite keeps no time zone, so values are stored there as naive UTC and marked UTC on the way
    out; PostgreSQL stores ``timestamptz``.  Naive datetimes are refused (their zone is a guess).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} refused: pass a timezone-aware one")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class AnalysisSession(Base):
    """One analysis session: a person (or group) doing one exercise, seen by one or more cameras."""

    __tablename__ = "sessions"
    __table_args__ = (
        CheckConstraint(_in("status", SESSION_STATUSES), name="status"),
        Index("ix_sessions_created_at", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid4()))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    ended_at: Mapped[datetime | None]
    exercise: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="open")
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)

    streams: Mapped[list[StreamRecord]] = relationship(
        back_populates="session",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="StreamRecord.id",
    )


class StreamRecord(Base):
    """One camera stream of a session, from connect to close."""

    __tablename__ = "streams"
    __table_args__ = (
        CheckConstraint(_in("status", STREAM_STATUSES), name="status"),
        CheckConstraint(
            "frames_received >= 0 AND frames_processed >= 0 AND frames_dropped >= 0",
            name="frames_non_negative",
        ),
        Index("ix_streams_session_id_stream_id", "session_id", "stream_id"),
        Index("ix_streams_status", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[str] = mapped_column(String(36), ForeignKey("sessions.id", ondelete="CASCADE"))
    stream_id: Mapped[str] = mapped_column(String(128))  # the client's label, e.g. "front-camera"
    backend: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(default=utc_now)
    ended_at: Mapped[datetime | None]
    clock_origin_s: Mapped[float | None] = mapped_column(Float)
    frames_received: Mapped[int] = mapped_column(default=0)
    frames_processed: Mapped[int] = mapped_column(default=0)
    frames_dropped: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(16), default="open")
    close_reason: Mapped[str | None] = mapped_column(String(500))

    session: Mapped[AnalysisSession] = relationship(back_populates="streams")
    reps: Mapped[list[Repetition]] = relationship(
        back_populates="stream", cascade="all, delete-orphan", passive_deletes=True
    )


class Repetition(Base):
    """One completed repetition of one tracked person in one stream."""

    __tablename__ = "reps"
    __table_args__ = (
        UniqueConstraint("stream_pk", "track_id", "rep_index", name="uq_reps_stream_track_index"),
        Index("ix_reps_exercise", "exercise"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    stream_pk: Mapped[int] = mapped_column(ForeignKey("streams.id", ondelete="CASCADE"))
    track_id: Mapped[int] = mapped_column(Integer)
    exercise: Mapped[str] = mapped_column(String(64))
    rep_index: Mapped[int] = mapped_column(Integer)
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    range_of_motion_deg: Mapped[float] = mapped_column(Float)
    tempo_s: Mapped[float] = mapped_column(Float)
    # NULL when no form rule could be measured on the rep: unscored, not perfect.
    score: Mapped[float | None] = mapped_column(Float, nullable=True)

    stream: Mapped[StreamRecord] = relationship(back_populates="reps")
    faults: Mapped[list[RepFault]] = relationship(
        back_populates="rep",
        cascade="all, delete-orphan",
        passive_deletes=True,
        lazy="selectin",
        order_by="RepFault.id",
    )


class RepFault(Base):
    """One form fault of one repetition."""

    __tablename__ = "rep_faults"
    __table_args__ = (
        Index("ix_rep_faults_rep_id", "rep_id"),
        Index("ix_rep_faults_code", "code"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    rep_id: Mapped[int] = mapped_column(ForeignKey("reps.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(String(500))
    weight: Mapped[float] = mapped_column(Float)

    rep: Mapped[Repetition] = relationship(back_populates="faults")


class AngleSecond(Base):
    """Mean, min and max of one joint angle of one tracked person over one second of a stream.

    The natural key is the primary key: one row per (stream, track, second, angle), and the
    series query (one stream, ordered by track, angle, second) reads it in index order.
    """

    __tablename__ = "angle_seconds"
    __table_args__ = (CheckConstraint("sample_count > 0", name="sample_count_positive"),)

    stream_pk: Mapped[int] = mapped_column(ForeignKey("streams.id", ondelete="CASCADE"), primary_key=True)
    track_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    angle: Mapped[str] = mapped_column(String(64), primary_key=True)
    second: Mapped[int] = mapped_column(Integer, primary_key=True)
    mean_deg: Mapped[float] = mapped_column(Float)
    min_deg: Mapped[float] = mapped_column(Float)
    max_deg: Mapped[float] = mapped_column(Float)
    sample_count: Mapped[int] = mapped_column(Integer)


class RigRecord(Base):
    """A calibrated camera rig uploaded over REST; ``rig`` is ``multiview.calibration_io.rig_to_dict``."""

    __tablename__ = "rigs"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now)
    camera_count: Mapped[int] = mapped_column(Integer)
    rig: Mapped[dict[str, Any]]


class Frame3D(Base):
    """One triangulated moment of a 3D session (a synchronised group of its cameras' frames).

    ``data`` holds the moment compactly as JSON: ``keypoints`` ([x, y, z] metres or null, in
    ``keypoints.KEYPOINT_NAMES`` order), ``reprojection_px`` per keypoint, ``angles`` (degrees),
    ``cameras`` (the cameras in the group).  ``capture_ts`` is the group's capture time on the
    clients' clock; ``reprojection_px`` (column) the mean over the keypoints, for quick queries.
    """

    __tablename__ = "frames_3d"

    session_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    capture_ts: Mapped[float] = mapped_column(Float)
    reprojection_px: Mapped[float | None] = mapped_column(Float, nullable=True)
    data: Mapped[dict[str, Any]]
