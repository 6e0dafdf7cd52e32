"""Storage of what camera streams produced: SQLAlchemy models, repository functions, Alembic migrations.

Typical use::

    database = create_database(settings.database_url)      # opens and migrates to head
    with database.session() as db:
        mark_interrupted(db)                                # once at start-up
        session_id = start_session(db, exercise="squat")
    with StreamRecorder.start(database, session_id, "front", "yolo") as recorder:
        for analysis in frames:
            recorder.add_frame(analysis)                    # committed when the block ends
"""

from pose_analyzer.storage.database import Database, create_database
from pose_analyzer.storage.errors import RecorderClosedError, SessionNotFoundError, StorageError
from pose_analyzer.storage.info import (
    AnglePoint,
    ExerciseSummary,
    FaultCount,
    RepInfo,
    SessionInfo,
    StreamInfo,
)
from pose_analyzer.storage.recorder import StreamRecorder
from pose_analyzer.storage.repository import (
    Interrupted,
    add_stream,
    angle_series,
    end_session,
    get_session,
    list_reps,
    list_sessions,
    mark_interrupted,
    mark_interrupted_streams,
    record_rep,
    session_summary,
    start_session,
)

__all__ = [
    "AnglePoint",
    "Database",
    "ExerciseSummary",
    "FaultCount",
    "Interrupted",
    "RecorderClosedError",
    "RepInfo",
    "SessionInfo",
    "SessionNotFoundError",
    "StorageError",
    "StreamInfo",
    "StreamRecorder",
    "add_stream",
    "angle_series",
    "create_database",
    "end_session",
    "get_session",
    "list_reps",
    "list_sessions",
    "mark_interrupted",
    "mark_interrupted_streams",
    "record_rep",
    "session_summary",
    "start_session",
]
