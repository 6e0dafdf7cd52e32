"""Record one stream: buffer per-frame angles into per-second aggregates and reps, commit them together.

Durability: the stream's row is committed when the recorder starts (status "open").  Reps and
angle seconds stay in memory until ``flush()`` or ``finish()`` commits them in one transaction
(``commit_reps()`` commits the reps alone, in fewer statements);
``finish()`` also writes the final status, counters and close reason.  A process killed outright
(SIGKILL, power loss) loses only what the open streams buffered since their last flush; the stream
row stays "open" until ``repository.mark_interrupted`` marks it "interrupted" at the next
start.  Everything committed before survives.

A recorder belongs to one stream and is not thread-safe.  Its methods block on the database;
the service drives it from a ``RecordingWriter`` (``streaming/writer.py``), off the frame loop.
It does not count frames: it writes the stream's ``FrameCounts`` with each commit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import TracebackType
from typing import cast

from sqlalchemy import Table, insert, update
from sqlalchemy.exc import SQLAlchemyError

from pose_analyzer.output import person_track_id
from pose_analyzer.storage.database import Database
from pose_analyzer.storage.errors import RecorderClosedError, StorageError
from pose_analyzer.storage.info import StreamInfo
from pose_analyzer.storage.models import STREAM_STATUSES, AngleSecond, StreamRecord, utc_now
from pose_analyzer.storage.rep_statement import reps_statement
from pose_analyzer.storage.repository import add_stream, check_rep, record_rep, stream_info
from pose_analyzer.types import FrameAnalysis, FrameCounts, RepRecord

# Angle seconds this far behind the newest one are dropped from memory after a flush; a frame that
# late (live streams and videos arrive in order) has its angles counted in ``late_samples`` instead.
LATE_WINDOW_S = 10
_REASON_MAX = 500
_ANGLE_TABLE = cast(Table, AngleSecond.__table__)


@dataclass(slots=True)
class _Aggregate:
    total: float
    minimum: float
    maximum: float
    count: int
    persisted: bool = False
    dirty: bool = True

    def add(self, value: float) -> None:
        self.total += value
        self.minimum = min(self.minimum, value)
        self.maximum = max(self.maximum, value)
        self.count += 1
        self.dirty = True


class StreamRecorder:
    """Collects what one stream produced and writes it to the database in whole transactions."""

    def __init__(self, database: Database, stream_pk: int, counts: FrameCounts | None = None) -> None:
        """Wrap an existing open stream row; ``StreamRecorder.start`` creates one.

        ``counts`` are the stream's frame counters, kept by the stream's owner (the recorder only
        writes them with each commit); None: counters of the recorder's own, all zero until set.
        """
        self._db = database
        self.stream_pk = stream_pk
        self.counts = counts if counts is not None else FrameCounts()
        self.late_samples = 0
        self._origin: float | None = None
        self._angles: dict[tuple[int, str, int], _Aggregate] = {}
        self._evicted_below = -(2**62)  # seconds below this were flushed and forgotten
        self._pending_reps: list[tuple[int, RepRecord]] = []
        self._seen_reps: set[tuple[int, int]] = set()
        self._origin_stored = False  # clock_origin_s committed (rep times are relative to it)
        self._closed = False

    @classmethod
    def start(
        cls,
        database: Database,
        session_id: str,
        stream_id: str,
        backend: str,
        counts: FrameCounts | None = None,
    ) -> StreamRecorder:
        """Commit a new open stream in session ``session_id`` and return its recorder.

        Raises:
            SessionNotFoundError: no such session.
            ValueError: empty label or backend.
        """
        with database.session() as db:
            stream_pk = add_stream(db, session_id, stream_id, backend)
        return cls(database, stream_pk, counts)

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise RecorderClosedError(f"stream {self.stream_pk} was already finished")

    def add_frame(self, analysis: FrameAnalysis) -> None:
        """Add one analysed frame: its people's joint angles and any rep they completed.

        Non-finite angles (joints not seen) are skipped; a rep is recorded from the frame that
        completed it (``new_rep``).

        Raises:
            RecorderClosedError: after ``finish()``.
            ValueError: a rep with non-finite numbers.
        """
        self._check_open()
        if self._origin is None:
            self._origin = analysis.timestamp
        second = math.floor(analysis.timestamp - self._origin)
        for person in analysis.people:
            track_id = person_track_id(person.person)
            for angle, value in person.angles.items():
                if math.isfinite(value):
                    self._add_angle(track_id, angle, second, float(value))
            if person.new_rep is not None:
                self.add_rep(track_id, person.new_rep)

    def _add_angle(self, track_id: int, angle: str, second: int, value: float) -> None:
        if second < self._evicted_below:
            self.late_samples += 1
            return
        aggregate = self._angles.get((track_id, angle, second))
        if aggregate is None:
            self._angles[(track_id, angle, second)] = _Aggregate(value, value, value, 1)
        else:
            aggregate.add(value)

    def add_rep(self, track_id: int, rep: RepRecord) -> bool:
        """Buffer one completed rep of ``track_id``; returns False when it was already recorded.

        Raises:
            RecorderClosedError: after ``finish()``.
            ValueError: non-finite numbers in the rep.
        """
        self._check_open()
        key = (track_id, rep.index)
        if key in self._seen_reps:
            return False
        check_rep(rep)
        self._seen_reps.add(key)
        self._pending_reps.append((track_id, rep))
        return True

    def flush(self) -> None:
        """Commit the reps and angle seconds buffered so far; the stream stays open.

        Raises:
            RecorderClosedError: after ``finish()``.
            StorageError: the database refused the write (the buffer is kept for a retry).
        """
        self._check_open()
        self._commit(None, None, read_back=False)

    def commit_reps(self) -> None:
        """Commit only the reps buffered so far (the stream's clock origin with them the first time,
        so their times can be read); angle seconds and counters wait for the next ``flush``.

        For a rep on its way to being announced: on a machine busy with inference every round
        trip to the database costs milliseconds, so on PostgreSQL this is ONE statement committed
        on its own (``rep_statement``); on SQLite (in-process, no round trips) one ORM transaction.

        Raises:
            RecorderClosedError: after ``finish()``.
            StorageError: the database refused the write (the reps are kept for a retry).
        """
        self._check_open()
        if not self._pending_reps:
            return
        origin = self._origin or 0.0
        store_origin = not self._origin_stored and self._origin is not None
        try:
            if self._db.engine.dialect.name == "postgresql":
                statement = reps_statement(self.stream_pk, self._pending_reps, origin, store_origin)
                with self._db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                    connection.execute(statement)
            else:
                with self._db.session() as db:
                    for track_id, rep in self._pending_reps:
                        record_rep(db, self.stream_pk, track_id, rep, clock_origin_s=origin)
                    if store_origin:
                        stream = update(StreamRecord).where(StreamRecord.id == self.stream_pk)
                        db.execute(stream.values(clock_origin_s=origin))
        except SQLAlchemyError as exc:
            raise StorageError(f"could not write the reps of stream {self.stream_pk}: {exc}") from exc
        self._pending_reps.clear()
        self._origin_stored = self._origin_stored or store_origin

    def finish(self, status: str = "completed", reason: str | None = None) -> StreamInfo:
        """Commit everything buffered with the stream's end, counters and ``status``, in one transaction.

        Raises:
            ValueError: ``status`` is not "completed", "failed" or "interrupted".
            RecorderClosedError: already finished.
            StorageError: the database refused the write (the recorder stays open for a retry).
        """
        if status not in STREAM_STATUSES or status == "open":
            raise ValueError(f"a stream ends as 'completed', 'failed' or 'interrupted', not {status!r}")
        self._check_open()
        info = self._commit(status, reason)
        assert info is not None  # read back
        self._closed = True
        return info

    def close(self) -> None:
        """Finish as "completed" unless already finished."""
        if not self._closed:
            self.finish("completed")

    def _commit(self, status: str | None, reason: str | None, read_back: bool = True) -> StreamInfo | None:
        """One transaction with everything buffered; returns the stream as stored (``read_back``:
        one more round trip, which the periodic ``flush`` does without)."""
        origin = self._origin or 0.0
        new_rows: list[dict[str, object]] = []
        changed_rows: list[dict[str, object]] = []
        for (track_id, angle, second), agg in self._angles.items():
            if not agg.dirty:
                continue
            values_row = {
                "stream_pk": self.stream_pk,
                "track_id": track_id,
                "angle": angle,
                "second": second,
                "mean_deg": agg.total / agg.count,
                "min_deg": agg.minimum,
                "max_deg": agg.maximum,
                "sample_count": agg.count,
            }
            (changed_rows if agg.persisted else new_rows).append(values_row)
        values: dict[str, object] = {
            "clock_origin_s": self._origin,
            "frames_received": self.counts.received,
            "frames_processed": self.counts.processed,
            "frames_dropped": self.counts.dropped,
        }
        if status is not None:
            values["status"] = status
            values["ended_at"] = utc_now()
            values["close_reason"] = reason[:_REASON_MAX] if reason else None
        try:
            with self._db.session() as db:
                for track_id, rep in self._pending_reps:
                    record_rep(db, self.stream_pk, track_id, rep, clock_origin_s=origin)
                if new_rows:
                    # Core executemany: about half the ORM bulk path's time for 10k+ rows.
                    db.connection().execute(insert(_ANGLE_TABLE), new_rows)
                if changed_rows:
                    # ORM bulk UPDATE by primary key: one statement, executed per row.
                    db.execute(update(AngleSecond), changed_rows)
                db.execute(update(StreamRecord).where(StreamRecord.id == self.stream_pk).values(**values))
                info = (
                    stream_info(db.get_one(StreamRecord, self.stream_pk, populate_existing=True))
                    if read_back
                    else None
                )
        except SQLAlchemyError as exc:
            raise StorageError(f"could not write stream {self.stream_pk}: {exc}") from exc
        self._pending_reps.clear()
        self._origin_stored = self._origin is not None
        for agg in self._angles.values():
            agg.persisted, agg.dirty = True, False
        self._evict()
        return info

    def _evict(self) -> None:
        """Forget flushed seconds far behind the newest, so a long stream's memory stays bounded."""
        if not self._angles:
            return
        horizon = max(second for _, _, second in self._angles) - LATE_WINDOW_S
        if horizon <= self._evicted_below:
            return
        self._evicted_below = horizon
        self._angles = {k: a for k, a in self._angles.items() if k[2] >= horizon}

    def __enter__(self) -> StreamRecorder:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Finish as "completed", or as "failed" with the exception as reason when the block raised."""
        if self._closed:
            return
        if exc is None:
            self.finish("completed")
        else:
            self.finish("failed", reason=f"{type(exc).__name__}: {exc}")
