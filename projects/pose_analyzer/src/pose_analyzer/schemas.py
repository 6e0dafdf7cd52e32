"""Wire messages of the live stream WebSocket ``/ws/streams/{stream_id}``.

Protocol (one camera per connection):

1. The client connects (API key as ``X-API-Key``, ``Authorization: Bearer`` or ``?api_key=``
   when the service has one).  Optionally it sends a ``start`` text message first (exercise,
   person of interest, backend, reference rep); the server answers ``started``.  Without
   ``start``, the first frame starts the stream with the service defaults (no exercise) and
   no ``started`` is sent.
2. Frames are binary messages, each a whole JPEG or PNG file.  A ``frame`` text message may
   precede a frame to give its id and the client's capture time (seconds, any monotonic
   clock of the client); it applies to the next binary message only.  Without it, the frame
   id is the frame's position in the stream (1, 2, ...) and the capture time is the server's
   receive time (Unix seconds).  Rep timing uses the capture time, so it must increase.
3. The server answers each PROCESSED frame with a ``frame`` result.  Frames that arrive
   while the previous one is still being analysed replace each other (latest-frame-wins):
   the replaced ones are never answered and ``dropped`` counts them.
4. A completed rep is announced by a ``rep`` message once it is committed to the database,
   after the answer of the frame that completed it (that answer is not held back by the commit
   and does not announce the rep: its ``rep_count`` and people's ``rep`` leave it out).  Every
   count the server sends includes only announced reps, so a rep a client was told about is
   stored, whatever happens to the service afterwards.  Each rep is announced exactly once.
5. ``stop`` ends the stream: the server answers the frame still waiting, announces its reps,
   then sends ``stopped`` (totals; by then the stream's recording is committed), then closes
   with 1000.

Persistence: each stream is recorded (per-second joint angles, reps with scores and faults,
frame counters) in the session named by ``start.session_id``, or in a new session of its
own; it is committed when the stream ends: "completed" after ``stop`` or a disconnect,
"failed" when the server closed it for an error, "interrupted" when the service stopped.

3D sessions (docs/live3d.md): a ``start`` naming ``rig`` (from ``/api/rigs``) and ``camera`` (one of
its cameras) makes the stream that camera of a 3D session; the cameras of one session name the
same ``session_id`` and capture times of one clock.  Each answer then carries ``pose3d``, the
triangulated moment of the frame's synchronised group (``output.Pose3DOut``; null when the group
had one camera).  An unknown rig or camera, a camera already streaming, or only one of rig and
camera close that stream (1008).

Errors: a text message that is not valid JSON or not a valid client message, a ``start``
sent twice or after the first frame, an unknown exercise or session get an ``error`` message and
the stream stays open.  The stream is closed (with a reason) for: a binary message that is
not a decodable image (1003); a frame over the size limit (1009); a missing/wrong API key,
too many streams, an invalid or busy stream id, or a client that does not read its answers
within the send timeout (1008: the service pings behind its answers, a pong not back within the
timeout closes the stream within timeout + ping interval); a failure of the service itself (1011).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from pose_analyzer.output import PersonOut, Pose3DOut, RepOut
from service_kit.errors import ServiceError


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReferenceRep(_Message):
    """A recorded reference repetition: angle names and a (T, len(angles)) series in degrees."""

    angles: list[str] = Field(min_length=1)
    series: list[list[float]] = Field(min_length=2)
    tolerance_deg: float = Field(default=15.0, gt=0)


class StartMessage(_Message):
    """Client -> server: configure the stream before its first frame."""

    type: Literal["start"] = "start"
    exercise: str | None = Field(default=None, description="an exercise name from /api/exercises")
    person_of_interest: int | None = Field(default=None, ge=0, description="track id whose reps count")
    backend: Literal["mediapipe", "yolo"] | None = Field(default=None, description="default: the service's")
    reference_rep: ReferenceRep | None = Field(
        default=None,
        description="every rep is compared with it by DTW (RepOut.reference); an invalid one is an error",
    )
    session_id: str | None = Field(
        default=None,
        description="record into this existing session (several cameras); default: the URL's "
        "?session_id=, else a new one.  A stream label that streamed in the session before goes on "
        "where it stopped (its rep count continues)",
    )
    rig: str | None = Field(
        default=None,
        description="a rig from /api/rigs: the session is 3D, its streams triangulated together "
        "(needs camera); streams of one 3D session share its session_id",
        max_length=64,
    )
    camera: str | None = Field(
        default=None, description="the camera of the rig this stream is", max_length=128
    )


class StopMessage(_Message):
    """Client -> server: end the stream after the waiting frame."""

    type: Literal["stop"] = "stop"


class FrameHeader(_Message):
    """Client -> server: id and capture time of the NEXT binary frame."""

    type: Literal["frame"] = "frame"
    frame_id: int | None = Field(default=None, ge=0)
    capture_ts: float | None = Field(
        default=None,
        description="client capture time, seconds: finite, below 1e12 in size and never less than "
        "the previous frame's, else the stream is closed with 1008 (invalid_capture_ts)",
    )


ClientMessage = Annotated[StartMessage | StopMessage | FrameHeader, Field(discriminator="type")]
CLIENT_MESSAGE: TypeAdapter[StartMessage | StopMessage | FrameHeader] = TypeAdapter(ClientMessage)


class FrameResult(_Message):
    """Server -> client: the analysis of one processed frame.

    ``capture_ts`` is the client's capture time (or the receive time, see the module doc);
    ``received_ts`` and ``processed_ts`` are server Unix times; ``latency_ms`` is from
    receive to answer; ``dropped`` counts this stream's frames replaced unanswered since
    the previous answer.  ``people`` are ``output.PersonOut`` (the service's one output model).
    """

    type: Literal["frame"] = "frame"
    stream_id: str
    frame_id: int
    capture_ts: float
    received_ts: float
    processed_ts: float
    latency_ms: float
    dropped: int
    width: int
    height: int
    people: list[PersonOut]
    rep_count: int
    timings_ms: dict[str, float]
    pose3d: Pose3DOut | None = Field(
        default=None, description="3D sessions only: the frame's triangulated moment (output.Pose3DOut)"
    )


class StartedMessage(_Message):
    type: Literal["started"] = "started"
    stream_id: str
    backend: str
    exercise: str | None
    person_of_interest: int | None
    session_id: str | None = Field(description="the database session this stream is recorded in")
    rep_count: int = Field(
        default=0,
        description="reps this stream label already has in the session (back after a lost connection)",
    )


class RepMessage(_Message):
    """Server -> client: a rep, announced once it is committed (one message per rep).

    The answer of the frame that completed it (``frame_id``) went out before, without it: answers
    never wait for the database, and their counts (``rep_count``, the people's ``rep_count`` and
    ``count_by_side``) include a rep only once this message announced it.  ``rep_count`` is the
    stream's count with this rep, ``person_rep_count``/``count_by_side`` the person's;
    ``latency_ms`` is from the frame's arrival to this announcement (its commit included),
    ``commit_ms`` the part of it spent waiting for the commit (null when streams are not recorded).
    """

    type: Literal["rep"] = "rep"
    stream_id: str
    frame_id: int
    track_id: int
    rep: RepOut
    person_rep_count: int
    count_by_side: dict[str, int] | None = None
    rep_count: int
    latency_ms: float
    commit_ms: float | None = None


class StoppedMessage(_Message):
    """Server -> client: the stream's totals after ``stop``."""

    type: Literal["stopped"] = "stopped"
    stream_id: str
    frames_received: int
    frames_processed: int
    frames_dropped: int
    rep_count: int
    reps: list[RepOut]


class ErrorBody(_Message):
    """The one error body of the service (HTTP answers carry it as ``{"error": ...}`` too)."""

    code: str
    message: str
    details: Any = None


class ErrorMessage(_Message):
    """Server -> client: a message was refused; the stream stays open."""

    type: Literal["error"] = "error"
    error: ErrorBody

    @classmethod
    def of(cls, err: ServiceError) -> ErrorMessage:
        return cls(error=ErrorBody(code=err.code, message=err.message, details=err.details))


ServerMessage = Annotated[
    FrameResult | RepMessage | StartedMessage | StoppedMessage | ErrorMessage, Field(discriminator="type")
]
SERVER_MESSAGE: TypeAdapter[FrameResult | RepMessage | StartedMessage | StoppedMessage | ErrorMessage] = (
    TypeAdapter(ServerMessage)
)
