"""A camera that comes back: its stream continues in the same session where the last one stopped.

A client that lost its connection (network, a replica killed or restarted) reconnects and sends
``start`` again with the same session id and stream label.  Each connection is a stream row of
its own; ``resume_stream`` closes the label's earlier rows that are still "open" (their process
or connection is gone: a label streams once at a time) and says how many reps the label already
has in the session, so the rep count goes on from the database instead of from zero.
"""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from pose_analyzer.storage.errors import SessionNotFoundError
from pose_analyzer.storage.models import AnalysisSession, Repetition, StreamRecord, utc_now

RESUMED_REASON = "the client reconnected; the stream goes on in a new connection"


def resume_stream(db: Session, session_id: str, stream_id: str, person_of_interest: int | None = None) -> int:
    """Close the earlier open rows of ``stream_id`` in ``session_id``; return its reps so far.

    The count per earlier row is that of ``person_of_interest`` when given, else of the track
    with most reps (as ``PoseEngine.rep_count`` counts).  An "interrupted" session (its process
    died) is open again: a stream goes on in it.

    Raises:
        SessionNotFoundError: no such session.
    """
    session = db.get(AnalysisSession, session_id)
    if session is None:
        raise SessionNotFoundError(session_id)
    if session.status == "interrupted":
        session.status, session.ended_at = "open", None
    earlier = select(StreamRecord.id).where(
        StreamRecord.session_id == session_id, StreamRecord.stream_id == stream_id
    )
    db.execute(
        update(StreamRecord)
        .where(StreamRecord.id.in_(earlier), StreamRecord.status == "open")
        .values(status="interrupted", close_reason=RESUMED_REASON, ended_at=utc_now())
    )
    per_track = (
        select(Repetition.stream_pk, Repetition.track_id, func.count().label("reps"))
        .where(Repetition.stream_pk.in_(earlier))
        .group_by(Repetition.stream_pk, Repetition.track_id)
    )
    if person_of_interest is not None:
        per_track = per_track.where(Repetition.track_id == person_of_interest)
    counts: dict[int, int] = {}
    for stream_pk, _track, reps in db.execute(per_track):
        counts[stream_pk] = max(counts.get(stream_pk, 0), int(reps))
    return sum(counts.values())
