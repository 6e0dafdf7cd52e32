"""The service's registry of training runs: the latest report of each run in SQL, and its metrics.

Trainers PUT their progress (`reporting.RunReporter`); rows live in the same database as the jobs
(SQLite file by default, SQLAlchemy 2.0), so the list survives a service restart. Prometheus sees
the `max_runs` most recently updated runs only, which bounds the `run` label's cardinality.

Besides the latest report, a row keeps when the service first heard the run running
(`started_at`, `first_step`) and how many `running` reports it got (`running_reports`): proof
that a run was seen while it trained, which a reader polling the latest report can miss when the
run is short.  A `running` report after a final status (a run resumed under its name) starts
that record again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import JSON, DateTime, Float, Integer, String, inspect, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from gpu_optimizer.jobs.store import make_engine

RUN_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
RunStatus = Literal["running", "finished", "aborted", "failed"]


# Counters are stored as SQL BIGINT: anything larger is not a real count and would overflow.
MAX_COUNT = 2**63 - 1
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


class RunReport(BaseModel):
    """What a trainer sends (see `Trainer._progress`)."""

    model_config = ConfigDict(extra="forbid")

    status: RunStatus
    step: Count = 0
    max_steps: int | None = Field(default=None, ge=1, le=MAX_COUNT)
    loss: Finite | None = None
    samples_per_s: float = Field(default=0.0, ge=0, le=1e12, allow_inf_nan=False)
    oom_events: Count = 0
    rollbacks: Count = 0
    restarts: Count = 0
    world_size: int = Field(default=1, ge=1, le=1_000_000)
    micro_batch: int | None = Field(default=None, ge=1, le=MAX_COUNT)
    config_digest: str = Field(default="", max_length=64)
    eval: dict[Annotated[str, Field(min_length=1, max_length=64)], Finite] = Field(
        default_factory=dict, max_length=32
    )


class RunOut(RunReport):
    name: str
    created_at: datetime
    updated_at: datetime
    # The attempt's first `running` report (None: never reported running) and their count.
    started_at: datetime | None = None
    first_step: int | None = None
    running_reports: int = 0


class _Base(DeclarativeBase):
    pass


class RunRow(_Base):
    __tablename__ = "training_runs"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    step: Mapped[int] = mapped_column(Integer)
    max_steps: Mapped[int | None] = mapped_column(Integer, nullable=True)
    loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    samples_per_s: Mapped[float] = mapped_column(Float)
    oom_events: Mapped[int] = mapped_column(Integer)
    rollbacks: Mapped[int] = mapped_column(Integer)
    restarts: Mapped[int] = mapped_column(Integer)
    world_size: Mapped[int] = mapped_column(Integer)
    micro_batch: Mapped[int | None] = mapped_column(Integer, nullable=True)
    config_digest: Mapped[str] = mapped_column(String(64))
    eval: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    first_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    running_reports: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


# Columns added after the table's first release, with what completes their type in ADD COLUMN.
_ADDED_COLUMNS = {"started_at": "", "first_step": "", "running_reports": " NOT NULL DEFAULT 0"}


def _add_missing_columns(engine: Engine) -> None:
    """Add the columns a database made before them lacks (``create_all`` skips existing tables)."""
    table, columns = RunRow.__tablename__, RunRow.__table__.c
    present = {column["name"] for column in inspect(engine).get_columns(table)}
    with engine.begin() as conn:
        for name, rest in _ADDED_COLUMNS.items():
            if name not in present:
                kind = columns[name].type.compile(dialect=engine.dialect)
                conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {kind}{rest}"))


def _out(row: RunRow) -> RunOut:
    return RunOut.model_validate(row, from_attributes=True)


class RunStore:
    """Upsert and read run reports; every method is its own short transaction."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        _Base.metadata.create_all(self.engine)
        _add_missing_columns(self.engine)
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    def report(self, name: str, report: RunReport) -> RunOut:
        """Store ``report`` as the run's latest; a `running` one also counts in the running record."""
        now = datetime.now(UTC)
        with self._session.begin() as s:
            row = s.get(RunRow, name, with_for_update=True)
            if row is None:
                row = RunRow(name=name, created_at=now, running_reports=0)
                s.add(row)
            if report.status == "running":
                if row.started_at is None or row.status != "running":  # this attempt's first
                    row.started_at, row.first_step, row.running_reports = now, report.step, 0
                row.running_reports += 1
            for key, value in report.model_dump().items():
                setattr(row, key, value)
            row.updated_at = now
        return _out(row)

    def get(self, name: str) -> RunOut | None:
        with Session(self.engine) as s:
            row = s.get(RunRow, name)
            return None if row is None else _out(row)

    def list(self, limit: int = 100, status: str | None = None) -> list[RunOut]:
        query = select(RunRow).order_by(RunRow.updated_at.desc()).limit(limit)
        if status is not None:
            query = query.where(RunRow.status == status)
        with Session(self.engine) as s:
            return [_out(r) for r in s.scalars(query)]


class RunCollector(Collector):
    """Per-run gauges and counters of the most recently updated runs (read at most every ttl_s)."""

    def __init__(self, store: RunStore, max_runs: int = 20, ttl_s: float = 2.0) -> None:
        self.store, self.max_runs, self.ttl_s = store, max_runs, ttl_s
        self._cached: list[Metric] = []
        self._at = -float("inf")

    def collect(self) -> Iterator[Metric]:
        if time.monotonic() - self._at > self.ttl_s:
            self._cached = self._read()
            self._at = time.monotonic()
        yield from self._cached

    def _read(self) -> list[Metric]:
        runs = self.store.list(limit=self.max_runs)
        step = GaugeMetricFamily("gpuopt_training_step", "Optimizer steps done", labels=["run"])
        loss = GaugeMetricFamily("gpuopt_training_loss", "Training loss of the last report", labels=["run"])
        rate = GaugeMetricFamily(
            "gpuopt_training_samples_per_second", "Training samples per second", labels=["run"]
        )
        running = GaugeMetricFamily(
            "gpuopt_training_running", "1 while the run reports running", labels=["run"]
        )
        ooms = CounterMetricFamily("gpuopt_training_oom_events", "Out-of-memory recoveries", labels=["run"])
        rollbacks = CounterMetricFamily(
            "gpuopt_training_rollbacks", "Rollbacks to a checkpoint", labels=["run"]
        )
        restarts = CounterMetricFamily(
            "gpuopt_training_restarts", "Group restarts by torchrun", labels=["run"]
        )
        for run in runs:
            step.add_metric([run.name], run.step)
            if run.loss is not None:
                loss.add_metric([run.name], run.loss)
            rate.add_metric([run.name], run.samples_per_s)
            running.add_metric([run.name], 1.0 if run.status == "running" else 0.0)
            ooms.add_metric([run.name], run.oom_events)
            rollbacks.add_metric([run.name], run.rollbacks)
            restarts.add_metric([run.name], run.restarts)
        return [step, loss, rate, running, ooms, rollbacks, restarts]
