"""Job rows in a real SQL database (SQLite file by default), SQLAlchemy 2.0 typed ORM."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, Float, String, Text, create_engine, event, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

JOB_STATES = ("queued", "running", "succeeded", "failed")


class Base(DeclarativeBase):
    pass


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


@dataclass(frozen=True, slots=True)
class JobRecord:
    id: str
    kind: str
    state: str
    params: dict[str, Any]
    progress: float
    message: str
    result: dict[str, Any] | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, row: JobRow) -> JobRecord:
        return cls(
            row.id,
            row.kind,
            row.state,
            row.params,
            row.progress,
            row.message,
            row.result,
            row.error,
            row.created_at,
            row.started_at,
            row.finished_at,
        )


def _now() -> datetime:
    return datetime.now(UTC)


def make_engine(url: str) -> Engine:
    """An engine for ``url``; for SQLite files the folder is created and WAL + foreign keys are on."""
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, json_serializer=lambda o: json.dumps(o, default=str))
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _pragmas(conn: Any, _: Any) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

    return engine


class JobStore:
    """Create, update and read jobs; every method is its own short transaction."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        Base.metadata.create_all(self.engine)
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    def create(self, kind: str, params: dict[str, Any]) -> JobRecord:
        row = JobRow(
            id=str(uuid.uuid4()),
            kind=kind,
            state="queued",
            params=params,
            progress=0.0,
            message="queued",
            created_at=_now(),
        )
        with self._session.begin() as s:
            s.add(row)
        return JobRecord.of(row)

    def update(self, job_id: str, **fields: Any) -> JobRecord:
        if "state" in fields and fields["state"] not in JOB_STATES:
            raise ValueError(f"unknown job state {fields['state']!r}")
        with self._session.begin() as s:
            row = s.get(JobRow, job_id)
            if row is None:
                raise KeyError(job_id)
            for key, value in fields.items():
                setattr(row, key, value)
        return JobRecord.of(row)

    def get(self, job_id: str) -> JobRecord | None:
        with Session(self.engine) as s:
            row = s.get(JobRow, job_id)
            return None if row is None else JobRecord.of(row)

    def list(self, limit: int = 100, state: str | None = None) -> list[JobRecord]:
        query = select(JobRow).order_by(JobRow.created_at.desc()).limit(limit)
        if state is not None:
            query = query.where(JobRow.state == state)
        with Session(self.engine) as s:
            return [JobRecord.of(r) for r in s.scalars(query)]

    def fail_unfinished(self, reason: str) -> int:
        """Mark jobs left queued/running by a previous process as failed (jobs do not survive restarts)."""
        with self._session.begin() as s:
            rows = s.scalars(select(JobRow).where(JobRow.state.in_(("queued", "running")))).all()
            for row in rows:
                row.state, row.error, row.finished_at = "failed", reason, _now()
            return len(rows)
