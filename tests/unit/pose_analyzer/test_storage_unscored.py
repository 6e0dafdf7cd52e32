"""Unscored reps (no form rule measurable) are stored as such, and the migration that allows them
keeps every existing rep and fault.  Real SQLite files; the PostgreSQL tier runs the migration too."""

from __future__ import annotations

import math
from pathlib import Path

from sqlalchemy import func, select

from pose_analyzer.storage import add_stream, create_database, list_reps, session_summary, start_session
from pose_analyzer.storage.models import RepFault
from pose_analyzer.storage.repository import record_rep
from pose_analyzer.types import Fault, RepRecord


def _rep(index: int, score: float, faults: list[Fault] | None = None) -> RepRecord:
    return RepRecord("squat", index, 10.0 + 2 * index, 11.5 + 2 * index, 80.0, 1.5, score, faults or [])


def test_upgrading_a_scored_database_keeps_its_reps_and_faults(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'pose.db'}"
    old = create_database(url, upgrade=False)
    old.upgrade("0001")
    with old.session() as db:
        session_id = start_session(db, exercise="squat")
        stream_pk = add_stream(db, session_id, "cam", "mediapipe")
        record_rep(
            db, stream_pk, 1, _rep(1, 80.0, [Fault("shallow", "go deeper", 20.0)]), clock_origin_s=10.0
        )
    old.dispose()

    database = create_database(url)  # upgrades to head: the reps table is rebuilt
    try:
        assert database.current_revision() == database.head_revision()
        with database.session() as db:
            # Rebuilding the table must not cascade-delete the faults that reference it.
            assert db.scalar(select(func.count(RepFault.id))) == 1
            assert [r.score for r in list_reps(db, session_id)] == [80.0]
            stream_pk = add_stream(db, session_id, "cam2", "mediapipe")
            record_rep(db, stream_pk, 1, _rep(2, math.nan), clock_origin_s=10.0)
        with database.session() as db:
            reps = list_reps(db, session_id)
            (summary,) = session_summary(db, session_id)
    finally:
        database.dispose()
    assert [r.index for r in reps] == [1, 2]
    assert math.isnan(reps[1].score), "an unscored rep must not come back with a score"
    # The mean covers the scored rep only; the unscored one neither counts as 0 nor as 100.
    assert summary.reps == 2
    assert summary.mean_score == 80.0


def test_a_session_of_unscored_reps_has_no_mean_score(tmp_path: Path) -> None:
    database = create_database(f"sqlite:///{tmp_path / 'pose.db'}")
    try:
        with database.session() as db:
            session_id = start_session(db, exercise="squat")
            stream_pk = add_stream(db, session_id, "cam", "mediapipe")
            record_rep(db, stream_pk, 1, _rep(1, math.nan), clock_origin_s=10.0)
        with database.session() as db:
            (summary,) = session_summary(db, session_id)
    finally:
        database.dispose()
    assert summary.mean_score is None
