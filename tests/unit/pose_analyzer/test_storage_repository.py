"""Repository and stream recorder behaviour, against a real SQLite file.

Every test here takes only the ``database`` fixture, so tests/e2e/test_storage_postgres.py runs the
same functions against PostgreSQL by overriding that fixture.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import delete, func, select

from pose_analyzer.storage import (
    Database,
    RecorderClosedError,
    SessionNotFoundError,
    StreamRecorder,
    add_stream,
    angle_series,
    create_database,
    end_session,
    get_session,
    list_reps,
    list_sessions,
    mark_interrupted_streams,
    session_summary,
    start_session,
)
from pose_analyzer.storage.models import AnalysisSession, AngleSecond, Repetition, RepFault, StreamRecord
from pose_analyzer.storage.recorder import LATE_WINDOW_S
from pose_analyzer.types import Fault, FrameAnalysis, FrameCounts, Person, PersonAnalysis, RepRecord

ANGLES = ("left_knee", "right_knee", "left_hip")


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = create_database(f"sqlite:///{tmp_path / 'pose.db'}")
    yield db
    db.dispose()


def _person(track_id: int | None, angles: dict[str, float], rep: RepRecord | None = None) -> PersonAnalysis:
    person = Person(np.zeros((17, 3), np.float32), (0.0, 0.0, 10.0, 10.0), 0.9, track_id)
    return PersonAnalysis(person=person, angles=angles, new_rep=rep)


def _rep(
    exercise: str, index: int, score: float, faults: list[Fault] | None = None, t: float = 0.0
) -> RepRecord:
    return RepRecord(exercise, index, t, t + 1.5, 80.0 + index, 1.5, score, faults or [])


def _new_session(database: Database, exercise: str | None = "squat") -> str:
    with database.session() as db:
        return start_session(db, exercise=exercise, meta={"user": "Ana María", "cameras": 2})


def _synthetic_frames(seed: int, seconds: float = 3.0, fps: float = 10.0) -> list[FrameAnalysis]:
    """Two tracks, random angles with some missing (NaN), reps that the engine repeats on later frames."""
    rng = np.random.default_rng(seed)
    frames = []
    last: dict[int, RepRecord | None] = {1: None, 2: None}
    t0 = 1_700_000_000.25  # wall-clock timestamps: seconds are counted from the first frame
    for i in range(int(seconds * fps)):
        t = t0 + i / fps
        people = []
        for track in (1, 2):
            if i % 7 == 6:  # a rep completes on this frame; later frames repeat it as last_rep
                previous = last[track]
                index = previous.index + 1 if previous is not None else 1
                last[track] = _rep("squat", index, float(rng.uniform(50, 100)), t=t - 1.0)
            angles = {name: float(rng.uniform(30, 170)) for name in ANGLES}
            if rng.random() < 0.2:
                angles["left_hip"] = math.nan
            people.append(_person(track, angles, last[track]))
        frames.append(FrameAnalysis(index=i, timestamp=t, width=640, height=480, people=people))
    return frames


def _expected_aggregates(
    frames: list[FrameAnalysis],
) -> dict[tuple[int, str, int], tuple[float, float, float, int]]:
    samples: dict[tuple[int, str, int], list[float]] = {}
    origin = frames[0].timestamp
    for frame in frames:
        for p in frame.people:
            for name, value in p.angles.items():
                if math.isfinite(value):
                    key = (p.person.track_id or 0, name, math.floor(frame.timestamp - origin))
                    samples.setdefault(key, []).append(value)
    return {k: (float(np.mean(v)), min(v), max(v), len(v)) for k, v in samples.items()}


def test_session_round_trip(database: Database) -> None:
    before = datetime.now(UTC)
    session_id = _new_session(database)
    with database.session() as db:
        info = get_session(db, session_id)
    assert info.id == session_id
    assert (info.exercise, info.status, info.meta) == ("squat", "open", {"user": "Ana María", "cameras": 2})
    assert info.created_at.tzinfo is UTC
    assert before <= info.created_at <= datetime.now(UTC)
    assert info.ended_at is None
    with database.session() as db:
        end_session(db, session_id, "completed")
    with database.session() as db:
        ended = get_session(db, session_id)
    assert ended.status == "completed"
    assert ended.ended_at is not None
    assert ended.ended_at >= ended.created_at


def test_unknown_session_is_a_clear_error(database: Database) -> None:
    with database.session() as db:
        for call in (get_session, list_reps, session_summary, angle_series):
            with pytest.raises(SessionNotFoundError, match="no-such-id"):
                call(db, "no-such-id")
        with pytest.raises(SessionNotFoundError):
            add_stream(db, "no-such-id", "front", "yolo")
    with pytest.raises(SessionNotFoundError):
        StreamRecorder.start(database, "no-such-id", "front", "yolo")


def test_bad_arguments_are_refused(database: Database) -> None:
    session_id = _new_session(database)
    with database.session() as db:
        with pytest.raises(ValueError, match="completed"):
            end_session(db, session_id, "open")
        with pytest.raises(ValueError, match="label"):
            add_stream(db, session_id, "  ", "yolo")
        with pytest.raises(ValueError, match="limit"):
            list_sessions(db, limit=0)


def test_sessions_are_listed_newest_first_with_paging(database: Database) -> None:
    ids = [_new_session(database, exercise=f"ex{i}") for i in range(4)]
    with database.session() as db:
        listed = [s.id for s in list_sessions(db)]
        page = [s.id for s in list_sessions(db, limit=2, offset=1)]
    assert listed == ids[::-1]
    assert page == ids[::-1][1:3]


def test_recorder_writes_nothing_until_finish_then_everything(database: Database) -> None:
    session_id = _new_session(database)
    frames = _synthetic_frames(seed=1)
    counts = FrameCounts()  # kept by the stream's owner, written by the recorder
    recorder = StreamRecorder.start(database, session_id, "front", "mediapipe", counts)
    for frame in frames:
        counts.received += 1
        recorder.add_frame(frame)
        counts.processed += 1
    counts.received += 3
    counts.dropped += 3
    with database.session() as db:
        assert list_reps(db, session_id) == []
        assert angle_series(db, session_id) == []
        assert get_session(db, session_id).streams[0].status == "open"

    info = recorder.finish()
    assert (info.status, info.stream_id, info.backend) == ("completed", "front", "mediapipe")
    assert (info.frames_received, info.frames_processed, info.frames_dropped) == (
        len(frames) + 3,
        len(frames),
        3,
    )
    assert info.ended_at is not None

    # Each rep once, though the engine repeats it as last_rep on every later frame.
    origin = frames[0].timestamp
    expected_reps = {
        (p.person.track_id, p.new_rep.index, p.new_rep.score, p.new_rep.start_time - origin)
        for f in frames
        for p in f.people
        if p.new_rep is not None
    }
    expected = _expected_aggregates(frames)
    with database.session() as db:
        reps = list_reps(db, session_id)
        series = angle_series(db, session_id)
    # Rep times are stored on the stream's clock: seconds since its first frame.
    assert {(r.track_id, r.index, r.score, r.start_s) for r in reps} == expected_reps
    assert len(reps) == len(expected_reps)
    assert {r.stream_id for r in reps} == {"front"}
    got = {(p.track_id, p.angle, p.second): (p.mean_deg, p.min_deg, p.max_deg, p.count) for p in series}
    assert got.keys() == expected.keys()
    for key, (mean, low, high, count) in expected.items():
        assert got[key][0] == pytest.approx(mean)
        assert got[key][1:] == pytest.approx((low, high, count))


def test_flush_then_more_samples_of_the_same_second_merge(database: Database) -> None:
    session_id = _new_session(database)
    values = [10.0, 20.0, 30.0, 90.0, 5.0]
    with StreamRecorder.start(database, session_id, "side", "yolo") as recorder:
        for i, value in enumerate(values):
            recorder.add_frame(FrameAnalysis(i, 100.0 + i * 0.1, 64, 48, [_person(0, {"left_knee": value})]))
            if i == 2:
                recorder.flush()
                with database.session() as db:
                    flushed = angle_series(db, session_id)
                assert [(p.count, p.max_deg) for p in flushed] == [(3, 30.0)]
    with database.session() as db:
        (point,) = angle_series(db, session_id)
    assert (point.second, point.count, point.min_deg, point.max_deg) == (0, 5, min(values), max(values))
    assert point.mean_deg == pytest.approx(np.mean(values))


def _record_then_fail(database: Database, session_id: str, frames: list[FrameAnalysis]) -> None:
    with StreamRecorder.start(database, session_id, "front", "yolo") as recorder:
        for frame in frames:
            recorder.add_frame(frame)
            recorder.counts.processed += 1
        raise RuntimeError("camera unplugged")


def test_samples_far_behind_a_flush_are_counted_late_not_stored(database: Database) -> None:
    session_id = _new_session(database)
    with StreamRecorder.start(database, session_id, "front", "yolo") as recorder:
        for second in range(LATE_WINDOW_S + 5):
            recorder.add_frame(
                FrameAnalysis(second, float(second), 64, 48, [_person(0, {"left_knee": 50.0})])
            )
        recorder.flush()
        # A frame from second 1 arriving now: its second was written and forgotten.
        recorder.add_frame(
            FrameAnalysis(99, 1.5, 64, 48, [_person(0, {"left_knee": 170.0, "right_knee": 1.0})])
        )
        assert recorder.late_samples == 2
    with database.session() as db:
        series = angle_series(db, session_id)
    assert [p.second for p in series] == list(range(LATE_WINDOW_S + 5))
    assert {(p.count, p.max_deg) for p in series} == {(1, 50.0)}


def test_failure_inside_the_block_commits_what_was_recorded_as_failed(database: Database) -> None:
    session_id = _new_session(database)
    frames = _synthetic_frames(seed=2, seconds=1.0)
    with pytest.raises(RuntimeError, match="camera unplugged"):
        _record_then_fail(database, session_id, frames)
    with database.session() as db:
        (stream,) = get_session(db, session_id).streams
        reps = list_reps(db, session_id)
    assert stream.status == "failed"
    assert stream.close_reason == "RuntimeError: camera unplugged"
    assert stream.frames_processed == len(frames)
    assert len(reps) == len(
        {(p.person.track_id, p.new_rep.index) for f in frames for p in f.people if p.new_rep}
    )
    assert reps


def test_finished_recorder_refuses_more_work(database: Database) -> None:
    recorder = StreamRecorder.start(database, _new_session(database), "front", "yolo")
    with pytest.raises(ValueError, match="open"):
        recorder.finish("open")
    recorder.finish("failed", reason="x" * 2000)
    assert recorder.closed
    with pytest.raises(RecorderClosedError):
        recorder.add_frame(FrameAnalysis(0, 0.0, 64, 48))
    with pytest.raises(RecorderClosedError):
        recorder.finish()
    recorder.close()  # closing twice is harmless


def test_rep_with_non_finite_numbers_is_refused(database: Database) -> None:
    recorder = StreamRecorder.start(database, _new_session(database), "front", "yolo")
    with pytest.raises(ValueError, match="score is inf"):
        recorder.add_rep(0, _rep("squat", 1, math.inf))
    bad_tempo = _rep("squat", 1, 70.0)
    bad_tempo.tempo_s = math.nan
    with pytest.raises(ValueError, match="tempo_s is nan"):
        recorder.add_rep(0, bad_tempo)
    # NaN is how the counter says "no rule could be measured": stored unscored, not refused.
    assert recorder.add_rep(0, _rep("squat", 1, math.nan))
    assert recorder.add_rep(0, _rep("squat", 2, 70.0))
    assert not recorder.add_rep(0, _rep("squat", 2, 70.0))
    recorder.close()


def test_summary_per_exercise(database: Database) -> None:
    session_id = _new_session(database, exercise=None)
    knees = Fault("knees_in", "Push your knees out — past your toes", 0.4)
    depth = Fault("shallow", "Go lower", 0.3)
    back = Fault("back_round", "Keep your back straight", 0.5)
    squats = [_rep("squat", 1, 90.0), _rep("squat", 2, 60.0, [knees, depth]), _rep("squat", 3, 75.0, [knees])]
    curls = [_rep("biceps_curl", 1, 40.0, [back]), _rep("biceps_curl", 2, 100.0)]
    with StreamRecorder.start(database, session_id, "front", "yolo") as front:
        for rep in squats:
            front.add_rep(0, rep)
    with StreamRecorder.start(database, session_id, "side", "yolo") as side:
        for rep in curls:
            side.add_rep(3, rep)
    with database.session() as db:
        summary = {s.exercise: s for s in session_summary(db, session_id, top_faults=1)}
        reps = list_reps(db, session_id)
    assert set(summary) == {"squat", "biceps_curl"}
    squat = summary["squat"]
    assert squat.reps == len(squats)
    assert squat.mean_score == pytest.approx(np.mean([r.score for r in squats]))
    assert squat.mean_tempo_s == pytest.approx(np.mean([r.tempo_s for r in squats]))
    roms = [r.range_of_motion_deg for r in squats]
    assert (squat.min_range_of_motion_deg, squat.max_range_of_motion_deg) == (min(roms), max(roms))
    assert squat.mean_range_of_motion_deg == pytest.approx(np.mean(roms))
    assert [(f.code, f.message, f.count) for f in squat.common_faults] == [("knees_in", knees.message, 2)]
    assert [f.code for f in summary["biceps_curl"].common_faults] == ["back_round"]
    assert [r.faults for r in reps if r.exercise == "squat"] == [tuple(r.faults) for r in squats]


def test_angle_series_filters_by_stream_track_and_angle(database: Database) -> None:
    session_id = _new_session(database)
    for label in ("front", "side"):
        with StreamRecorder.start(database, session_id, label, "yolo") as recorder:
            for frame in _synthetic_frames(seed=3, seconds=2.0):
                recorder.add_frame(frame)
    with database.session() as db:
        everything = angle_series(db, session_id)
        side = angle_series(db, session_id, "side")
        one = angle_series(db, session_id, "side", track_id=2, angles=["left_knee"])
    assert {p.stream_id for p in everything} == {"front", "side"}
    assert {p.stream_id for p in side} == {"side"}
    assert len(side) * 2 == len(everything)
    assert {(p.stream_id, p.track_id, p.angle) for p in one} == {("side", 2, "left_knee")}
    assert [p.second for p in one] == sorted(p.second for p in one)


def test_open_streams_are_marked_interrupted_at_start_up(database: Database) -> None:
    session_id = _new_session(database)
    StreamRecorder.start(database, session_id, "left-open", "yolo")
    StreamRecorder.start(database, session_id, "finished", "yolo").close()
    with database.session() as db:
        assert mark_interrupted_streams(db) == 1
    with database.session() as db:
        statuses = {s.stream_id: s.status for s in get_session(db, session_id).streams}
        assert mark_interrupted_streams(db) == 0
    assert statuses == {"left-open": "interrupted", "finished": "completed"}


def test_deleting_a_session_deletes_its_streams_reps_faults_and_angles(database: Database) -> None:
    session_id = _new_session(database)
    with StreamRecorder.start(database, session_id, "front", "yolo") as recorder:
        for frame in _synthetic_frames(seed=4, seconds=1.0):
            recorder.add_frame(frame)
        recorder.add_rep(9, _rep("squat", 1, 50.0, [Fault("knees_in", "Push your knees out", 0.4)]))
    tables = (Repetition, RepFault, AngleSecond)
    with database.session() as db:
        assert all(db.scalar(select(func.count()).select_from(t)) for t in tables)
        # A bulk DELETE: only the database's ON DELETE CASCADE (foreign keys on) can remove the children.
        db.execute(delete(AnalysisSession).where(AnalysisSession.id == session_id))
    with database.session() as db:
        assert [db.scalar(select(func.count()).select_from(t)) for t in tables] == [0, 0, 0]


def test_reps_committed_alone_read_back_as_reps_flushed_with_everything(database: Database) -> None:
    """``commit_reps`` (one statement on PostgreSQL, the ORM on SQLite) stores what ``flush`` does."""
    session_id = _new_session(database)
    faults = [Fault("shallow", "not deep enough", 0.5), Fault("knees_in", "knees cave in", 0.25)]
    reps = [_rep("squat", 1, 80.0, faults, t=1_700_000_001.0), _rep("squat", 2, math.nan, t=1_700_000_003.0)]
    t0 = 1_700_000_000.5
    recorders = {
        label: StreamRecorder.start(database, session_id, label, "yolo") for label in ("alone", "all")
    }
    for recorder in recorders.values():
        recorder.add_frame(FrameAnalysis(0, t0, 640, 480, [_person(1, {"left_knee": 90.0})]))
        for i, rep in enumerate(reps, 1):
            frame = FrameAnalysis(i, t0 + 2 * i, 640, 480, [_person(1, {"left_knee": 90.0 + i}, rep)])
            recorder.add_frame(frame)
    recorders["alone"].commit_reps()
    recorders["alone"].commit_reps()  # nothing new: nothing written twice
    recorders["all"].flush()
    with database.session() as db:
        stored = list_reps(db, session_id)
        origins = dict(db.execute(select(StreamRecord.stream_id, StreamRecord.clock_origin_s)).all())
        series = angle_series(db, session_id)

    def rows(label: str) -> list[tuple[object, ...]]:
        """The stream's reps without their label, an unscored rep's NaN as None (NaN != NaN)."""
        return [
            (
                r.track_id,
                r.index,
                r.start_s,
                r.end_s,
                r.tempo_s,
                r.faults,
                None if math.isnan(r.score) else r.score,
            )
            for r in stored
            if r.stream_id == label
        ]

    assert rows("alone") == rows("all")
    assert [(r[1], r[-1]) for r in rows("alone")] == [(1, 80.0), (2, None)]
    assert rows("alone")[0][5] == tuple(faults)  # in the rep's order
    assert origins == {"alone": t0, "all": t0}  # so the reps' times can be told after a crash
    assert {p.stream_id for p in series} == {"all"}  # angle seconds wait for the next flush
