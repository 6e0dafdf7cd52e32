"""What a stream produced, kept in the database: a recorder per stream, committed when it ends or breaks."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from sqlalchemy.exc import SQLAlchemyError

from pose_analyzer.storage import Database, StorageError, StreamRecorder, end_session, start_session
from pose_analyzer.storage.resume import resume_stream
from pose_analyzer.types import FrameCounts


@dataclass(slots=True)
class StreamRecording:
    """A stream's recorder, the session it opened for itself (None when it joined one), and the
    reps its label already had in the session (``earlier_reps``: it came back after a lost connection).

    Its methods block on the database: the stream's ``RecordingWriter`` calls them off the event loop.
    """

    recorder: StreamRecorder
    session_id: str
    own_session: str | None
    earlier_reps: int = 0
    # finish() may be called from a worker thread and again from the event loop when the
    # first call was cancelled; the lock makes the second wait (and do nothing if the first succeeded).
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _finished: bool = False

    @classmethod
    def open(
        cls,
        database: Database,
        stream_id: str,
        backend: str,
        exercise: str | None,
        session_id: str | None,
        counts: FrameCounts | None = None,
        person_of_interest: int | None = None,
    ) -> StreamRecording:
        """Start recording ``stream_id`` in ``session_id``, or in a new session of its own when None.

        Joining a session where ``stream_id`` streamed before continues it (``resume_stream``).

        Raises:
            SessionNotFoundError: ``session_id`` names no session.
        """
        own = None
        earlier = 0
        with database.session() as db:
            if session_id is None:
                own = session_id = start_session(db, exercise=exercise, meta={"stream_id": stream_id})
            else:
                earlier = resume_stream(db, session_id, stream_id, person_of_interest)
        recorder = StreamRecorder.start(database, session_id, stream_id, backend, counts)
        return cls(recorder, session_id, own, earlier)

    def finish(self, database: Database, status: str, reason: str | None) -> None:
        """Commit everything with the stream's end; ends its own session too.

        Once it succeeded, later calls do nothing; after a failure it may be called again (with
        the same or another status): what was committed is not written twice.

        Raises:
            StorageError: the database refused the write.
        """
        with self._lock:
            if self._finished:
                return
            if not self.recorder.closed:
                self.recorder.finish(status, reason)
            if self.own_session is not None:
                # "interrupted" streams (service restart) leave their session interrupted too.
                ended = status if status in ("failed", "interrupted") else "completed"
                try:
                    with database.session() as db:
                        end_session(db, self.own_session, ended)
                except SQLAlchemyError as exc:
                    raise StorageError(f"could not end session {self.own_session}: {exc}") from exc
            self._finished = True
