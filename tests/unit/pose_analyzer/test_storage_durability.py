"""What was committed survives a restart and a SIGKILL; what a killed stream had not flushed is lost.

The crash semantics under test (see storage/recorder.py): a stream's row is committed when it
starts; reps and angle seconds commit on ``flush()`` and ``finish()``.  A killed process loses only
its open streams' buffers since their last flush, and its open streams stay "open" until the next
start marks them "interrupted".
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from pose_analyzer.storage import (
    StorageError,
    StreamRecorder,
    angle_series,
    create_database,
    get_session,
    list_reps,
    mark_interrupted_streams,
    start_session,
)
from pose_analyzer.types import FrameAnalysis, Person, PersonAnalysis, RepRecord

# The child records stream "done" to the end, then stream "live" with 2 reps flushed and 3 more
# only buffered, says READY and waits to be killed.
CHILD = """
import sys, time
import numpy as np
from pose_analyzer.storage import StreamRecorder, create_database, start_session
from pose_analyzer.types import FrameAnalysis, Person, PersonAnalysis, RepRecord

def frame(i, rep_index):
    rep = RepRecord("squat", rep_index, i * 0.1, i * 0.1 + 1, 90.0, 1.0, 80.0) if rep_index else None
    person = Person(np.zeros((17, 3), np.float32), (0.0, 0.0, 1.0, 1.0), 0.9, 1)
    return FrameAnalysis(i, i * 0.1, 64, 48, [PersonAnalysis(person, {"left_knee": 90.0 + i}, new_rep=rep)])

database = create_database(sys.argv[1])
with database.session() as db:
    session_id = start_session(db, exercise="squat")
with StreamRecorder.start(database, session_id, "done", "yolo") as done:
    for i in range(30):
        done.add_frame(frame(i, i // 10))
        done.counts.processed += 1
live = StreamRecorder.start(database, session_id, "live", "yolo")
for i in range(60):
    live.add_frame(frame(i, i // 10))
    live.counts.processed += 1
    if i == 29:
        live.flush()
print(session_id, flush=True)
time.sleep(600)
"""


def test_sigkill_loses_only_the_open_streams_unflushed_buffer(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'pose.db'}"
    with subprocess.Popen([sys.executable, "-c", CHILD, url], stdout=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout is not None
            session_id = child.stdout.readline().strip()
            assert session_id, f"child ended early with code {child.poll()}"
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
    assert child.returncode == -signal.SIGKILL

    database = create_database(url)
    with database.engine.connect() as c:
        assert c.execute(text("PRAGMA integrity_check")).scalar() == "ok"
    with database.session() as db:
        streams = {s.stream_id: s for s in get_session(db, session_id).streams}
        reps = list_reps(db, session_id)
        live_seconds = {p.second for p in angle_series(db, session_id, "live")}
    assert streams["done"].status == "completed"
    assert streams["done"].frames_processed == 30
    assert streams["live"].status == "open"
    assert streams["live"].frames_processed == 30  # as of the flush
    assert sorted(r.index for r in reps if r.stream_id == "done") == [1, 2]
    assert sorted(r.index for r in reps if r.stream_id == "live") == [1, 2]  # 3..5 were only buffered
    assert live_seconds == {0, 1, 2}  # frames 0..29 at 0.1 s

    with database.session() as db:
        assert mark_interrupted_streams(db) == 1
    with database.session() as db:
        live = next(s for s in get_session(db, session_id).streams if s.stream_id == "live")
    assert live.status == "interrupted"
    assert live.close_reason is not None
    database.dispose()


def _frame(i: int, rep: RepRecord | None) -> FrameAnalysis:
    person = Person(np.zeros((17, 3), np.float32), (0.0, 0.0, 1.0, 1.0), 0.9, 4)
    return FrameAnalysis(
        i, i / 15, 64, 48, [PersonAnalysis(person, {"right_elbow": 40.0 + 3 * i}, new_rep=rep)]
    )


def test_restart_reads_back_the_same_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'data' / 'pose.db'}"
    database = create_database(url)
    with database.session() as db:
        session_id = start_session(db, exercise="biceps_curl", meta={"note": "restart"})
    with StreamRecorder.start(database, session_id, "front", "mediapipe") as recorder:
        for i in range(45):
            rep = (
                RepRecord("biceps_curl", i // 15, i / 15 - 1, i / 15, 120.0, 1.0, 70.0 + i)
                if i >= 15
                else None
            )
            recorder.add_frame(_frame(i, rep))
    with database.session() as db:
        before = (get_session(db, session_id), list_reps(db, session_id), angle_series(db, session_id))
    database.dispose()

    reopened = create_database(url)
    with reopened.session() as db:
        after = (get_session(db, session_id), list_reps(db, session_id), angle_series(db, session_id))
    reopened.dispose()
    assert after == before
    assert [r.index for r in after[1]] == [1, 2]
    assert len(after[2]) == 3  # 45 frames at 15 fps: seconds 0, 1, 2


def test_a_refused_write_keeps_the_buffer_for_a_retry(tmp_path: Path) -> None:
    database = create_database(f"sqlite:///{tmp_path / 'pose.db'}")
    with database.session() as db:
        session_id = start_session(db, exercise="biceps_curl")
    recorder = StreamRecorder.start(database, session_id, "front", "yolo")
    for i in range(30):
        recorder.add_frame(
            _frame(i, RepRecord("biceps_curl", 1, 0.0, 1.0, 120.0, 1.0, 90.0) if i >= 15 else None)
        )
    # The database refuses rep inserts (as a full disk or a lost server would refuse the transaction).
    with database.engine.begin() as connection:
        connection.execute(
            text("CREATE TRIGGER refuse BEFORE INSERT ON reps BEGIN SELECT RAISE(ABORT, 'no'); END")
        )
    with pytest.raises(StorageError, match="could not write stream"):
        recorder.flush()
    with database.session() as db:
        assert list_reps(db, session_id) == []
        assert angle_series(db, session_id) == []  # the failed transaction wrote nothing at all
    with database.engine.begin() as connection:
        connection.execute(text("DROP TRIGGER refuse"))
    recorder.finish()
    with database.session() as db:
        assert [r.index for r in list_reps(db, session_id)] == [1]
        assert sum(p.count for p in angle_series(db, session_id)) == 30
    database.dispose()


def test_commit_reps_commits_the_reps_with_their_clock_origin_and_leaves_the_angles(tmp_path: Path) -> None:
    database = create_database(f"sqlite:///{tmp_path / 'pose.db'}")
    with database.session() as db:
        session_id = start_session(db, exercise="biceps_curl")
    recorder = StreamRecorder.start(database, session_id, "front", "yolo")
    for i in range(150, 180):  # the stream's clock starts at 10 s (frame 150 at 15 fps)
        rep = RepRecord("biceps_curl", 1, 10.0, 11.0, 120.0, 1.0, 90.0) if i == 165 else None
        recorder.add_frame(_frame(i, rep))
    recorder.commit_reps()
    with database.session() as db:
        (rep,) = list_reps(db, session_id)
        assert (rep.index, rep.start_s, rep.end_s) == (1, 0.0, 1.0)  # relative to the origin...
        # ... which is committed with it, so the rep's capture times can be told after a crash.
        assert db.execute(text("SELECT clock_origin_s FROM streams")).scalar_one() == 10.0
        assert angle_series(db, session_id) == []  # the angle seconds wait for the next flush
    recorder.flush()
    with database.session() as db:
        assert [r.index for r in list_reps(db, session_id)] == [1]  # not written twice
        assert sum(p.count for p in angle_series(db, session_id)) == 30
    database.dispose()
