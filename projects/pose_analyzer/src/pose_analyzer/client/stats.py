"""What one camera stream of the client did: frames sent and answered, latency, reps, reconnections."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

FPS_WINDOW_S = 2.0
# Answered frames remembered for the ``rep`` messages that follow them (a rep is announced once
# committed, a few frames after the answer of the frame that completed it).
ANSWERED_KEPT = 256


def _rate(stamps: deque[float], now: float) -> float:
    while stamps and now - stamps[0] > FPS_WINDOW_S:
        stamps.popleft()
    return len(stamps) / FPS_WINDOW_S


@dataclass(frozen=True, slots=True)
class ToldRep:
    """A rep the service announced (a ``rep`` message): the stream's session and label, its
    1-based index in the connection's count, the person's track, the rep's times (the client's
    capture clock) and score."""

    session_id: str | None
    stream_id: str
    track_id: int
    index: int
    start_s: float
    end_s: float
    score: float | None
    faults: tuple[str, ...]


@dataclass
class StreamStats:
    """Counters of one stream (one camera), across its reconnections.

    ``outages_s``: for each lost connection, the seconds from the loss to the first answer on the
    next one (the failover time a user sees).
    """

    stream_id: str
    sent: int = 0
    resent: int = 0
    answered: int = 0
    dropped: int = 0
    skipped: int = 0
    rep_count: int = 0
    last_score: float | None = None
    faults: int = 0
    last_faults: tuple[str, ...] = ()
    latency_ms: float | None = None
    connections: int = 0
    reconnects: int = 0  # connections lost (outages); failed_attempts: tries that did not connect
    failed_attempts: int = 0
    errors: list[str] = field(default_factory=list)
    outages_s: list[float] = field(default_factory=list)
    restarted_s: list[float] = field(default_factory=list)  # loss -> ``started`` again
    reps: list[ToldRep] = field(default_factory=list)
    replicas: list[str | None] = field(default_factory=list)  # per connection, behind HAProxy
    # Send of the frame that completed a rep -> the rep's announcement (the service commits a rep
    # before it announces it, so this bounds the rep's last frame -> commit); latencies_ms: every
    # frame's send -> answer, rep_frame_latencies_ms: that of the frames that completed a rep.
    rep_latencies_ms: list[float] = field(default_factory=list)
    rep_frame_latencies_ms: list[float] = field(default_factory=list)
    # The service's own latency_ms of the announcements: from the frame's arrival to the ``rep``
    # message, built right after the rep's commit returned (no network, no client), and the part
    # of it spent waiting for the commit (their commit_ms).
    rep_service_ms: list[float] = field(default_factory=list)
    rep_commit_wait_ms: list[float] = field(default_factory=list)
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))
    state: str = "starting"
    _sent_at: dict[int, float] = field(default_factory=dict, repr=False)
    _sent_stamps: deque[float] = field(default_factory=deque, repr=False)
    _answer_stamps: deque[float] = field(default_factory=deque, repr=False)
    _lost_at: float | None = field(default=None, repr=False)
    # frame id -> (its send, its answer's latency in ms), of the latest answered frames.
    _answered_frames: dict[int, tuple[float, float]] = field(default_factory=dict, repr=False)
    _rep_frame: tuple[int, float] | None = field(default=None, repr=False)  # the last rep's frame, send

    def on_sent(self, frame_id: int, resent: bool = False) -> None:
        """A frame goes out (counted before its send); ``resent``: again, after its connection was
        lost unanswered.  ``sent`` counts each frame once: in lockstep, ``answered == sent`` once
        every answer came."""
        now = time.perf_counter()
        if resent:
            self.resent += 1
        else:
            self.sent += 1
        self._sent_at[frame_id] = now
        self._sent_stamps.append(now)

    def on_answer(self, answer: dict[str, Any], session_id: str | None) -> None:
        """Count a ``frame`` answer: latency from its send, the outage it ended, the stream's count."""
        now = time.perf_counter()
        frame_id = int(answer["frame_id"])
        sent_at = self._sent_at.pop(frame_id, None)
        for older in [f for f in self._sent_at if f < frame_id]:  # dropped by the service
            del self._sent_at[older]
        if sent_at is not None:
            self.latency_ms = (now - sent_at) * 1000.0
            self.latencies_ms.append(self.latency_ms)
            self._answered_frames[frame_id] = (sent_at, self.latency_ms)
            if len(self._answered_frames) > ANSWERED_KEPT:
                del self._answered_frames[next(iter(self._answered_frames))]
        if self._lost_at is not None:
            self.outages_s.append(now - self._lost_at)
            self._lost_at = None
        self.answered += 1
        self.dropped += int(answer.get("dropped", 0))
        self._answer_stamps.append(now)
        self.rep_count = int(answer.get("rep_count", self.rep_count))

    def on_rep(self, message: dict[str, Any], session_id: str | None) -> None:
        """Count a ``rep`` message: the rep the service announced (committed) and its latencies."""
        frame_id = int(message["frame_id"])
        sent = self._answered_frames.pop(frame_id, None)
        if sent is not None:  # the frame's first rep (reps of one frame are announced together)
            self._rep_frame = (frame_id, sent[0])
            self.rep_frame_latencies_ms.append(sent[1])
        if self._rep_frame is not None and self._rep_frame[0] == frame_id:
            self.rep_latencies_ms.append((time.perf_counter() - self._rep_frame[1]) * 1000.0)
        if message.get("latency_ms") is not None:
            self.rep_service_ms.append(float(message["latency_ms"]))
        if message.get("commit_ms") is not None:
            self.rep_commit_wait_ms.append(float(message["commit_ms"]))
        self.rep_count = int(message.get("rep_count", self.rep_count))
        rep = message["rep"]
        codes = tuple(f["code"] for f in rep.get("faults", []))
        self.reps.append(
            ToldRep(
                session_id,
                self.stream_id,
                int(message["track_id"]),
                int(rep["index"]),
                float(rep["start_s"]),
                float(rep["end_s"]),
                rep.get("score"),
                codes,
            )
        )
        self.last_score = rep.get("score")
        self.last_faults = codes
        self.faults += len(codes)

    def on_connected(self, rep_count: int, replica: str | None = None) -> None:
        """A connection got ``started``; ``replica``: the balancer's X-Pose-Replica header, if any."""
        self.connections += 1
        self.replicas.append(replica)
        if self._lost_at is not None:
            self.restarted_s.append(time.perf_counter() - self._lost_at)
        self.rep_count = rep_count
        self.state = "streaming"
        self._sent_at.clear()
        self._answered_frames.clear()
        self._rep_frame = None

    def on_lost(self, reason: str) -> None:
        """A connection broke or could not be made (a reconnection follows)."""
        self.failed_attempts += 1
        if len(self.errors) < 100:
            self.errors.append(reason)
        self.state = "reconnecting"
        if self._lost_at is None:
            self.reconnects += 1
            self._lost_at = time.perf_counter()

    def fps_sent(self) -> float:
        return _rate(self._sent_stamps, time.perf_counter())

    def fps_answered(self) -> float:
        return _rate(self._answer_stamps, time.perf_counter())

    def summary(self) -> dict[str, Any]:
        """The totals as plain data (the CLI's summary, the benchmark's figures)."""
        return {
            "stream_id": self.stream_id,
            "state": self.state,
            "sent": self.sent,
            "resent": self.resent,
            "answered": self.answered,
            "dropped": self.dropped,
            "skipped": self.skipped,
            "rep_count": self.rep_count,
            "reps_told": len(self.reps),
            "last_score": self.last_score,
            "faults": self.faults,
            "connections": self.connections,
            "reconnects": self.reconnects,
            "failed_attempts": self.failed_attempts,
            "replicas": self.replicas,
            "outages_s": [round(s, 3) for s in self.outages_s],
            "restarted_s": [round(s, 3) for s in self.restarted_s],
            "errors": self.errors[-5:],
        }
