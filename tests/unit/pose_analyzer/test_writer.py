"""The stream's database writer: off the frame loop, commits on request, failures reported to the caller."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from pose_analyzer.storage import (
    Database,
    StorageError,
    angle_series,
    create_database,
    get_session,
    list_reps,
)
from pose_analyzer.streaming.recording import StreamRecording
from pose_analyzer.streaming.writer import RecordingWriter, RetryPolicy
from pose_analyzer.types import FrameAnalysis, FrameCounts, Person, PersonAnalysis, RepRecord


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = create_database(f"sqlite:///{tmp_path / 'pose.db'}")
    yield db
    db.dispose()


def _frame(i: int, rep_index: int | None = None) -> FrameAnalysis:
    rep = RepRecord("squat", rep_index, i * 0.1 - 1, i * 0.1, 90.0, 1.0, 80.0) if rep_index else None
    person = Person(np.zeros((17, 3), np.float32), (0.0, 0.0, 1.0, 1.0), 0.9, 1)
    return FrameAnalysis(i, i * 0.1, 64, 48, [PersonAnalysis(person, {"left_knee": 90.0 + i}, new_rep=rep)])


def _reps(database: Database, session_id: str) -> list[int]:
    with database.session() as db:
        return [r.index for r in list_reps(db, session_id)]


async def test_a_rep_can_be_awaited_committed_before_it_is_announced(database: Database) -> None:
    counts = FrameCounts()
    recording = StreamRecording.open(database, "cam", "mediapipe", "squat", None, counts)
    writer = RecordingWriter(recording, database, flush_interval_s=3600.0)
    writer.start()
    for i in range(5):
        assert await writer.add(_frame(i)) is None  # queued; nothing waits for the database
    committed = await writer.add(_frame(5, rep_index=1), commit=True)
    assert committed is not None
    await committed
    assert _reps(database, recording.session_id) == [1]
    with database.session() as db:  # the rep alone: the angle seconds wait for the flush interval
        assert angle_series(db, recording.session_id) == []
    assert writer.commits == 1
    counts.processed = 6
    await writer.close("completed", None)
    with database.session() as db:
        (stream,) = get_session(db, recording.session_id).streams
    assert (stream.status, stream.frames_processed) == ("completed", 6)


async def test_frames_wait_for_the_flush_interval_and_the_close_commits_them(database: Database) -> None:
    recording = StreamRecording.open(database, "cam", "mediapipe", "squat", None)
    writer = RecordingWriter(recording, database, flush_interval_s=3600.0)
    writer.start()
    await writer.add(_frame(1, rep_index=1))
    await writer.add(_frame(2))
    assert _reps(database, recording.session_id) == []  # not yet: no commit asked, interval not over
    await writer.close("completed", None)
    assert _reps(database, recording.session_id) == [1]


async def test_a_failed_commit_is_reported_to_whoever_awaits_it(database: Database) -> None:
    recording = StreamRecording.open(database, "cam", "mediapipe", "squat", None)
    writer = RecordingWriter(recording, database, flush_interval_s=3600.0, retry=RetryPolicy(attempts=1))
    writer.start()
    with database.session() as db:  # the database refuses the writes from now on
        db.execute(text("ALTER TABLE reps RENAME TO reps_gone"))
    committed = await writer.add(_frame(1, rep_index=1), commit=True)
    assert committed is not None
    with pytest.raises(StorageError):
        await committed
    assert writer.failed_commits == 1
    with pytest.raises(StorageError):  # the end cannot be committed either, and says so
        await writer.close("failed", "storage")


def test_capacity_must_be_positive(database: Database) -> None:
    recording = StreamRecording.open(database, "cam", "mediapipe", "squat", None)
    with pytest.raises(ValueError, match="capacity"):
        RecordingWriter(recording, database, capacity=0)


class _RetryLogged(logging.Handler):
    """Sets an event (on the test's loop) when the writer logs that it will try a commit again."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self.retrying = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "commit failed; trying again":
            self.loop.call_soon_threadsafe(self.retrying.set)


async def test_a_commit_blocked_by_a_lock_is_retried_until_the_lock_goes(tmp_path: Path) -> None:
    db_file = tmp_path / "locked.db"
    database = create_database(f"sqlite:///{db_file}?timeout=0.05")
    try:
        recording = StreamRecording.open(database, "cam", "mediapipe", "squat", None)
        policy = RetryPolicy(attempts=200, backoff_s=0.01, max_backoff_s=0.05)
        writer = RecordingWriter(recording, database, flush_interval_s=3600.0, retry=policy)
        writer.start()
        handler = _RetryLogged(asyncio.get_running_loop())
        logging.getLogger("pose_analyzer.streaming.writer").addHandler(handler)
        other = sqlite3.connect(db_file, isolation_level=None)  # another process's write lock
        other.execute("BEGIN EXCLUSIVE")
        try:
            committed = await writer.add(_frame(1, rep_index=1), commit=True)
            assert committed is not None
            await asyncio.wait_for(handler.retrying.wait(), 30)  # the first attempt failed
            assert not committed.done()
        finally:
            other.execute("ROLLBACK")
            other.close()
            logging.getLogger("pose_analyzer.streaming.writer").removeHandler(handler)
        await asyncio.wait_for(committed, 30)
        assert writer.failed_commits >= 1
        assert _reps(database, recording.session_id) == [1]
        await writer.close("completed", None)
    finally:
        database.dispose()


def test_retry_backoff_doubles_up_to_its_cap() -> None:
    policy = RetryPolicy(attempts=6, backoff_s=0.2, max_backoff_s=1.0)
    assert [policy.delay(n) for n in range(1, 6)] == pytest.approx([0.2, 0.4, 0.8, 1.0, 1.0])
    with pytest.raises(ValueError, match="retry policy"):
        RetryPolicy(attempts=0)
