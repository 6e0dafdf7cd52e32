"""A real clip through the whole PoseEngine into storage: what is stored is what the engine produced.

The glute-bridge clip is decoded every second frame at 640 pixels wide with MediaPipe in tracking mode,
as in test_rep_counts.py; the frames go through a StreamRecorder into a SQLite file.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pose_analyzer.detection.mediapipe import MediaPipeDetector
from pose_analyzer.engine import PoseEngine, detect_and_analyse
from pose_analyzer.storage import (
    Database,
    StreamRecorder,
    angle_series,
    create_database,
    list_reps,
    session_summary,
    start_session,
)
from pose_analyzer.types import FrameAnalysis
from pose_analyzer.video_io import iter_frames, probe

# The shortest clip with a counted rep (3 s): the engine, not storage, dominates the cost.
pytestmark = pytest.mark.slow

CLIP, EXERCISE = "bridging_1rep.mp4", "glute_bridge"


Recorded = tuple[Database, str, PoseEngine, list[FrameAnalysis]]


@pytest.fixture(scope="module")
def recorded(test_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    database = create_database(f"sqlite:///{tmp_path_factory.mktemp('video') / 'pose.db'}")
    with database.session() as db:
        session_id = start_session(db, exercise=EXERCISE, meta={"clip": CLIP})
    detector = MediaPipeDetector(static_image_mode=False)
    detector.setup()
    engine = PoseEngine(exercise=EXERCISE)
    frames = []
    try:
        with StreamRecorder.start(database, session_id, "file", "mediapipe") as recorder:
            for frame in iter_frames(probe(test_data / "videos" / CLIP), max_width=640, every=2):
                recorder.counts.received += 1
                analysis = detect_and_analyse(detector, engine, frame)
                recorder.add_frame(analysis)
                frames.append(analysis)
    finally:
        detector.close()
    yield database, session_id, engine, frames
    database.dispose()


def test_stored_reps_are_the_engines_reps(recorded: Recorded) -> None:
    database, session_id, engine, frames = recorded
    origin = frames[0].timestamp
    expected = sorted(
        (track, rep.index, rep.start_time - origin, rep.end_time - origin, rep.score)
        for track in engine.track_ids()
        for rep in engine.reps(track)
    )
    with database.session() as db:
        stored = list_reps(db, session_id)
        (summary,) = session_summary(db, session_id)
    assert expected, "the engine must count the rep in this clip"
    # Floats go through the database bit for bit, so the comparison is exact.
    assert sorted((r.track_id, r.index, r.start_s, r.end_s, r.score) for r in stored) == expected
    assert summary.exercise == EXERCISE
    assert summary.reps == len(expected)
    assert summary.mean_score == pytest.approx(np.mean([e[-1] for e in expected]))


def test_stored_angle_seconds_summarise_the_engines_angles(
    recorded: Recorded,
) -> None:
    database, session_id, _, frames = recorded
    origin = frames[0].timestamp
    samples: dict[tuple[int, str, int], list[float]] = {}
    for frame in frames:
        for person in frame.people:
            for name, value in person.angles.items():
                if math.isfinite(value):
                    key = (person.person.track_id or 0, name, math.floor(frame.timestamp - origin))
                    samples.setdefault(key, []).append(value)
    with database.session() as db:
        series = angle_series(db, session_id, "file")
    stored = {(p.track_id, p.angle, p.second): p for p in series}
    assert stored.keys() == samples.keys()
    for key, values in samples.items():
        point = stored[key]
        assert (point.count, point.min_deg, point.max_deg) == (len(values), min(values), max(values))
        assert point.mean_deg == pytest.approx(np.mean(values))
