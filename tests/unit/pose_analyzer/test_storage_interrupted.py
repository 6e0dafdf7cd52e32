"""Start-up closes what a crashed process left open: streams and their sessions become "interrupted"."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pose_analyzer.storage import (
    Database,
    StreamRecorder,
    add_stream,
    create_database,
    end_session,
    get_session,
    mark_interrupted,
    start_session,
)


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = create_database(f"sqlite:///{tmp_path / 'pose.db'}")
    yield db
    db.dispose()


def test_open_streams_and_their_sessions_are_interrupted_and_api_sessions_stay_open(
    database: Database,
) -> None:
    with database.session() as db:
        own = start_session(db, exercise="squat", meta={"stream_id": "cam"})
        add_stream(db, own, "cam", "mediapipe")  # the process died with it open
        shared = start_session(db, exercise="squat")  # made through the API for two cameras
        add_stream(db, shared, "front", "mediapipe")
        idle = start_session(db)  # made through the API, no camera yet: may still be joined
        ended = start_session(db, meta={"stream_id": "done"})
        end_session(db, ended, "completed")
        # The process died between committing the stream's end and its own session's end.
        orphan = start_session(db, meta={"stream_id": "late"})
    StreamRecorder.start(database, orphan, "late", "mediapipe").finish("completed")

    with database.session() as db:
        closed = mark_interrupted(db)
    assert (closed.streams, closed.sessions) == (2, 3)
    with database.session() as db:
        status = {sid: get_session(db, sid) for sid in (own, shared, idle, ended, orphan)}
    assert {sid: s.status for sid, s in status.items()} == {
        own: "interrupted",
        shared: "interrupted",
        idle: "open",
        ended: "completed",
        orphan: "interrupted",
    }
    assert all(s.ended_at is not None for sid, s in status.items() if sid != idle)
    assert [s.status for s in status[own].streams] == ["interrupted"]
    assert [s.status for s in status[orphan].streams] == ["completed"]
    with database.session() as db:  # a second start-up finds nothing left to close
        again = mark_interrupted(db)
    assert (again.streams, again.sessions) == (0, 0)


def test_a_session_can_end_interrupted_and_nothing_else_new(database: Database) -> None:
    with database.session() as db:
        sid = start_session(db)
        end_session(db, sid, "interrupted")
        assert get_session(db, sid).status == "interrupted"
        with pytest.raises(ValueError, match="interrupted"):
            end_session(db, sid, "paused")
