"""A stream's reps, announced once they are committed, without holding any frame's answer back.

A frame that completes a rep is answered at once, like any other frame, but its answer does not
announce the rep yet: the rep is queued for the database writer with a commit future, and a
separate ``rep`` message (``schemas.RepMessage``) goes out once that commit returned.  Until
then every answer shows the counts without the reps still waiting (``RepLedger.mask``), so a
count a client sees never includes a rep that a crash could still lose.  Reps are announced in
the order of their frames (the writer commits in that order), each exactly once.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

from pose_analyzer.output import PersonOut, RepOut, person_track_id
from pose_analyzer.schemas import RepMessage
from pose_analyzer.types import FrameAnalysis


@dataclass(slots=True)
class HeldReps:
    """The reps one frame completed, waiting for their commit (``committed``: None when the stream
    is not recorded, announced at once)."""

    frame_id: int
    received_perf: float  # the frame's arrival (``time.perf_counter``)
    rep_count: int  # the stream's rep count with these reps
    messages: list[RepMessage]
    sides: list[tuple[int, str]]  # each rep's (track id, body side)
    committed: asyncio.Future[None] | None
    queued_perf: float = field(default_factory=time.perf_counter)


class RepLedger:
    """The reps a stream completed but has not announced, and the counts its answers may show."""

    def __init__(self, stream_id: str, rep_offset: int) -> None:
        self.stream_id = stream_id
        self.shown = rep_offset  # the stream's rep count as answers show it (announced reps only)
        self._held_frames = 0
        self._by_track: Counter[int] = Counter()
        self._by_side: Counter[tuple[int, str]] = Counter()

    def hold(
        self,
        frame_id: int,
        received_perf: float,
        analysis: FrameAnalysis,
        rep_count: int,
        committed: asyncio.Future[None] | None,
    ) -> HeldReps:
        """Hold back the reps ``analysis`` completed (``rep_count``: the stream's count with them)."""
        messages, sides = [], []
        for person in analysis.people:
            rep = person.new_rep
            if rep is None:
                continue
            track = person_track_id(person.person)
            self._by_track[track] += 1
            self._by_side[(track, rep.side)] += 1
            sides.append((track, rep.side))
            messages.append(
                RepMessage(
                    stream_id=self.stream_id,
                    frame_id=frame_id,
                    track_id=track,
                    rep=RepOut.of(rep),
                    person_rep_count=person.rep_count,
                    count_by_side=person.count_by_side,
                    rep_count=rep_count,
                    latency_ms=0.0,
                )
            )
        self._held_frames += 1
        return HeldReps(frame_id, received_perf, rep_count, messages, sides, committed)

    def release(self, held: HeldReps) -> list[RepMessage]:
        """``held`` is committed: count its reps as shown; returns its messages, timed now."""
        self._held_frames -= 1
        self.shown = held.rep_count
        now = time.perf_counter()
        for track, side in held.sides:
            self._by_track[track] -= 1
            self._by_side[(track, side)] -= 1
        for message in held.messages:
            message.latency_ms = round((now - held.received_perf) * 1000.0, 3)
            if held.committed is not None:
                message.commit_ms = round((now - held.queued_perf) * 1000.0, 3)
        return held.messages

    def count(self, rep_count: int) -> int:
        """The stream count an answer shows when the engine counts ``rep_count``: that, once no
        rep waits for its commit; else the count with the reps announced so far."""
        if self._held_frames == 0:
            self.shown = rep_count
        return self.shown

    def mask(self, people: list[PersonOut]) -> list[PersonOut]:
        """``people`` as an answer shows them: no ``rep`` (a ``rep`` message announces it) and
        counts without the reps still waiting for their commit."""
        return [self._masked(p) if p.rep is not None or self._by_track[p.track_id] else p for p in people]

    def _masked(self, person: PersonOut) -> PersonOut:
        track = person.track_id
        by_side = person.count_by_side
        if by_side is not None:
            by_side = {side: n - self._by_side[(track, side)] for side, n in by_side.items()}
        return person.model_copy(
            update={
                "rep": None,
                "rep_count": person.rep_count - self._by_track[track],
                "count_by_side": by_side,
            }
        )
