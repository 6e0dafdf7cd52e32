"""One camera stream: its frame slot, its pose engine, and the loop that answers frames."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from pose_analyzer.cuts import cut_sample
from pose_analyzer.detection.paths import StreamDetector
from pose_analyzer.engine import PoseEngine
from pose_analyzer.metrics import StreamMetrics
from pose_analyzer.output import Pose3DOut, RepOut, people_out
from pose_analyzer.schemas import FrameResult, StoppedMessage
from pose_analyzer.storage import StorageError
from pose_analyzer.streaming.announce import HeldReps, RepLedger
from pose_analyzer.streaming.decode import decode_frame
from pose_analyzer.streaming.errors import ServerFailureError, StorageFailedError, StreamClosedError
from pose_analyzer.streaming.image_header import DecodeLimits
from pose_analyzer.streaming.memory import release_free_memory
from pose_analyzer.streaming.slot import LatestSlot, MomentSlot, SlotClosedError
from pose_analyzer.streaming.writer import RecordingWriter
from pose_analyzer.types import Detections, Frame, FrameAnalysis, FrameCounts
from service_kit.errors import unexpected_error

log = logging.getLogger(__name__)

SendFn = Callable[[str], Awaitable[None]]
MAX_AWAITING_GROUPS = 4


class Joint3D(Protocol):
    """A stream's part in a 3D session (``streaming.joint3d.Joined3D``)."""

    def __call__(self, capture_ts: float, analysis: FrameAnalysis) -> Awaitable[Pose3DOut | None]:
        """The frame's moment, if any, once its synchronised group is decided."""

    def choose(self, waiting: Sequence[float]) -> int:
        """Which waiting frame (capture times, arrival order) to analyse: the session's moment."""

    def received(self, capture_ts: float) -> None:
        """A frame arrived (its group knows the camera has moved on to it)."""

    def dropped(self, capture_ts: float) -> None:
        """A frame was dropped unanalysed (its group need not wait for it)."""


@dataclass(slots=True, frozen=True)
class RawFrame:
    """A frame as it arrived: encoded bytes, its id, capture time (s) and server receive times."""

    data: bytes
    frame_id: int
    capture_ts: float
    received_ts: float
    received_perf: float


class _FrameJob:
    """One frame's work in the worker thread (``detection.batcher.FrameJob``): decode, then analyse
    the detections with the stream's engine; it notes when each stage ended."""

    __slots__ = ("analysis", "decoded", "detected", "dropped", "engine", "limits", "raw", "started")

    def __init__(self, raw: RawFrame, dropped: int, engine: PoseEngine, limits: DecodeLimits) -> None:
        self.raw, self.dropped, self.engine, self.limits = raw, dropped, engine, limits
        self.started = self.decoded = self.detected = 0.0
        self.analysis: FrameAnalysis | None = None

    def decode(self) -> Frame:
        self.started = time.perf_counter()
        image = decode_frame(self.raw.data, self.limits)
        # The cut test's sample now, while the decoded image is in the CPU's caches.
        frame = Frame(image, self.raw.capture_ts, self.raw.frame_id, cut_sample(image))
        self.decoded = time.perf_counter()
        return frame

    def finish(self, frame: Frame, detections: Detections) -> _FrameJob:
        self.detected = time.perf_counter()
        self.analysis = self.engine.analyse(frame, detections)
        return self


@contextlib.contextmanager
def _analysis_failures() -> Iterator[None]:
    """Turn a failure of detection or analysis into ``ServerFailureError`` (stream errors pass);
    the exception goes to the log under a request id, the client gets the id only."""
    try:
        yield
    except StreamClosedError:
        raise
    except Exception as exc:
        request_id, _ = unexpected_error(exc, "frame analysis")
        raise ServerFailureError(f"analysis failed (request id {request_id})", "analysis_failed") from exc


class StreamSession:
    """Analyses one stream's frames, newest first, and sends one ``FrameResult`` per processed frame.

    A camera of a 3D session analyses the moment its session chose instead of its newest frame
    (``MomentSlot``, ``FrameGrouper.choose``: the session's cameras drop the same moments).

    The receive side calls ``offer`` for each frame; ``run`` hands the newest waiting frame to
    the stream's detector handle, where it is decoded, detected and analysed in one worker hop
    (the frame is taken only once a compute slot, or a replica of a shared model, is free, so
    the wait drops stale frames instead of answering them late), sends the answer, and queues
    the analysis for the database writer.  No answer waits for the database: a frame that completed a rep is
    answered at once without announcing it, and the rep is announced by a ``rep`` message once
    its commit returned (``streaming.announce``: a client told of a rep finds it stored).
    """

    def __init__(
        self,
        stream_id: str,
        engine: PoseEngine,
        detector: StreamDetector,
        metrics: StreamMetrics,
        exercise: str | None = None,
        writer: RecordingWriter | None = None,
        counts: FrameCounts | None = None,
        decode_limits: DecodeLimits | None = None,
        rep_offset: int = 0,
        joint: Joint3D | None = None,
    ) -> None:
        # Reps the stream's label had in its session before this connection (it came back after
        # a lost connection): the answers' rep_count goes on from there.
        self.rep_offset = rep_offset
        self.decode_limits = decode_limits or DecodeLimits()
        self.joint = joint
        self.stream_id = stream_id
        self.engine = engine
        self.detector = detector
        self.metrics = metrics
        self.exercise = exercise
        self.writer = writer
        self.counts = counts if counts is not None else FrameCounts()
        # 2D: latest-frame-wins; 3D: the cameras of the session drop the same moments.
        self.slot: MomentSlot[RawFrame] = (
            LatestSlot(self._drop)
            if joint is None
            else MomentSlot(lambda raw: raw.capture_ts, joint.choose, self._drop)
        )
        self.ledger = RepLedger(stream_id, rep_offset)
        # Reps waiting for their commit, in the order of their frames; None: no more.
        self._held: asyncio.Queue[HeldReps | None] = asyncio.Queue()
        self._closed = False
        self._released = False
        label = metrics.stream_label(stream_id)
        self._received = metrics.frames_received.labels(label)
        self._processed = metrics.frames_processed.labels(label)
        self._dropped = metrics.frames_dropped.labels(label)
        self._latency = metrics.end_to_end_seconds.labels(label)

    def offer(self, frame: RawFrame) -> None:
        """Hand a new frame to the stream; frames the slot drops for it are counted."""
        self.counts.received += 1
        self._received.inc()
        if self.joint is not None:
            self.joint.received(frame.capture_ts)
        self.slot.put(frame)

    def _drop(self, frame: RawFrame) -> None:
        """The slot dropped ``frame`` unanalysed (on a put, or on a take for a later moment)."""
        self.counts.dropped += 1
        self._dropped.inc()
        if self.joint is not None:
            self.joint.dropped(frame.capture_ts)

    def _take(self) -> _FrameJob:
        raw, dropped = self.slot.take_nowait()
        return _FrameJob(raw, dropped, self.engine, self.decode_limits)

    async def run(self, send: SendFn) -> None:
        """Answer frames until the slot is closed and empty, then announce the reps still held.

        Raises:
            UnsupportedFrameError: a frame that is not a whole JPEG/PNG image.
            ServerFailureError: the detector or the analysis failed.
            StorageFailedError: a rep's commit failed after the writer's retries.
            StreamClosedError: whatever ``send`` raises to end the stream.
        """
        frames = asyncio.ensure_future(self._answer_frames(send))
        announcer = asyncio.ensure_future(self._announce(send))
        try:
            await asyncio.wait({frames, announcer}, return_when=asyncio.FIRST_COMPLETED)
            if announcer.done():  # before its end mark: it failed
                frames.cancel()
                announcer.result()
            frames.result()
            self._held.put_nowait(None)
            await announcer
        finally:
            frames.cancel()
            announcer.cancel()

    async def _answer_frames(self, send: SendFn) -> None:
        # 3D sessions: a frame's answer waits for its synchronised group; meanwhile the stream
        # analyses its next frames (at most MAX_AWAITING_GROUPS answers wait, in order).
        awaiting: deque[asyncio.Future[None]] = deque()
        try:
            while True:
                try:
                    await self.slot.ready()
                except SlotClosedError:
                    break
                with _analysis_failures():
                    job = await self.detector.run(self._take)
                analysis = job.analysis
                assert analysis is not None  # set by finish
                if self.joint is None:
                    await self._deliver(job, analysis, None, send)
                    continue
                moment = asyncio.ensure_future(self.joint(job.raw.capture_ts, analysis))
                previous = awaiting[-1] if awaiting else None
                awaiting.append(asyncio.ensure_future(self._deliver_3d(previous, moment, job, send)))
                while awaiting and (len(awaiting) > MAX_AWAITING_GROUPS or awaiting[0].done()):
                    await awaiting.popleft()  # raises what ended it
            while awaiting:
                await awaiting.popleft()
        finally:
            for task in awaiting:
                task.cancel()

    async def _deliver_3d(
        self,
        previous: asyncio.Future[None] | None,
        moment: asyncio.Future[Pose3DOut | None],
        job: _FrameJob,
        send: SendFn,
    ) -> None:
        pose3d = await moment
        if previous is not None:
            await previous  # answers go out in the order of the frames
        assert job.analysis is not None
        await self._deliver(job, job.analysis, pose3d, send)

    async def _deliver(
        self, job: _FrameJob, analysis: FrameAnalysis, pose3d: Pose3DOut | None, send: SendFn
    ) -> None:
        """Send the answer at once; a frame's reps are held for their commit (queued first, so
        the commit runs while the answer goes out), other frames go to the writer after."""
        if not any(p.new_rep is not None for p in analysis.people):
            await send(self._answer(job, analysis, pose3d).model_dump_json())
            if self.writer is not None:
                await self.writer.add(analysis)
        else:
            committed = None if self.writer is None else await self.writer.add(analysis, commit=True)
            count = self.rep_offset + self.engine.rep_count()
            held = self.ledger.hold(job.raw.frame_id, job.raw.received_perf, analysis, count, committed)
            await send(self._answer(job, analysis, pose3d).model_dump_json())
            self._held.put_nowait(held)
        self._latency.observe(time.perf_counter() - job.raw.received_perf)

    async def _announce(self, send: SendFn) -> None:
        """Announce each frame's held reps, in order, once their commit returned.

        Raises:
            StorageFailedError: a commit failed after the writer's retries.
        """
        while (held := await self._held.get()) is not None:
            if held.committed is not None:
                try:
                    await held.committed
                except StorageError as exc:
                    request_id, _ = unexpected_error(exc, f"stream {self.stream_id}: commit of a rep")
                    raise StorageFailedError(
                        f"the stream's rep could not be saved (request id {request_id})"
                    ) from exc
                # The rep commit latency: the rep's last frame arrived -> its commit returned.
                self.metrics.rep_commit_seconds.observe(time.perf_counter() - held.received_perf)
            for message in self.ledger.release(held):
                await send(message.model_dump_json())

    def _answer(
        self, job: _FrameJob, analysis: FrameAnalysis, pose3d: Pose3DOut | None = None
    ) -> FrameResult:
        self.metrics.decode_seconds.observe(job.decoded - job.started)
        self.counts.processed += 1
        self._processed.inc()
        self._count_reps(analysis)
        raw = job.raw
        timings = {
            "decode": (job.decoded - job.started) * 1000.0,
            "detect": (job.detected - job.decoded) * 1000.0,
            **analysis.timings_ms,
        }
        return FrameResult(
            stream_id=self.stream_id,
            frame_id=raw.frame_id,
            capture_ts=raw.capture_ts,
            received_ts=raw.received_ts,
            processed_ts=time.time(),
            latency_ms=(time.perf_counter() - raw.received_perf) * 1000.0,
            dropped=job.dropped,
            width=analysis.width,
            height=analysis.height,
            people=self.ledger.mask(people_out(analysis.people)),
            rep_count=self.ledger.count(self.rep_offset + self.engine.rep_count()),
            timings_ms={k: round(v, 3) for k, v in timings.items()},
            pose3d=pose3d,
        )

    def _count_reps(self, analysis: FrameAnalysis) -> None:
        """Count each rep completed on this frame in the metrics."""
        exercise = self.exercise or "none"
        for person in analysis.people:
            self.metrics.count_rejected(person.new_rejected)
            rep = person.new_rep
            if rep is None:
                continue
            self.metrics.reps.labels(exercise).inc()
            if not math.isnan(rep.score):  # an unscored rep (nothing measurable) has no score
                self.metrics.form_score.labels(exercise).observe(rep.score)

    def stopped(self) -> StoppedMessage:
        """The stream's totals."""
        return StoppedMessage(
            stream_id=self.stream_id,
            frames_received=self.counts.received,
            frames_processed=self.counts.processed,
            frames_dropped=self.counts.dropped,
            rep_count=self.rep_offset + self.engine.rep_count(),
            reps=[RepOut.of(r) for r in self.engine.reps()],
        )

    async def close(self, status: str = "completed", reason: str | None = None) -> None:
        """Stop taking frames, commit the recording with ``status`` and release the detector.

        When cancelled meanwhile (the connection torn down), both are done at once, blocking.
        Later calls do nothing once the end is committed; after a failed commit a later call
        may try again (e.g. with "failed").

        Raises:
            StorageFailedError: the end could not be committed after the writer's retries.
        """
        if self._closed:
            return
        self.slot.close()
        try:
            if self.writer is not None:
                await self.writer.close(status, reason)
            self._closed = True
        except StorageError as exc:
            request_id, _ = unexpected_error(exc, f"stream {self.stream_id}: commit of its end")
            raise StorageFailedError(f"the stream could not be saved (request id {request_id})") from exc
        except asyncio.CancelledError:
            self._closed = True
            self._release_now()
            raise
        finally:
            if not self._released:
                await self._release()

    def _release_now(self) -> None:
        if not self._released:
            self._released = True
            self.detector.release_now()

    async def _release(self) -> None:
        self._released = True
        try:
            await self.detector.release()
        except asyncio.CancelledError:
            self.detector.release_now()
            raise
        await asyncio.to_thread(release_free_memory)
