"""One camera stream: its latest-frame slot, its pose engine, and the loop that answers frames."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from pose_analyzer.engine import PoseEngine
from pose_analyzer.metrics import StreamMetrics
from pose_analyzer.schemas import FaultOut, FrameResult, PersonOut, RepOut, StoppedMessage
from pose_analyzer.storage import Database, StorageError
from pose_analyzer.streaming.decode import decode_frame
from pose_analyzer.streaming.errors import ServerFailureError, StreamClosedError
from pose_analyzer.streaming.hub import StreamDetection
from pose_analyzer.streaming.image_header import DecodeLimits
from pose_analyzer.streaming.recording import StreamRecording
from pose_analyzer.streaming.slot import LatestSlot, SlotClosedError
from pose_analyzer.types import Detections, Frame, FrameAnalysis, PersonAnalysis, RepRecord

log = logging.getLogger(__name__)

SendFn = Callable[[str], Awaitable[None]]


@dataclass(slots=True, frozen=True)
class RawFrame:
    """A frame as it arrived: encoded bytes, its id, capture time (s) and server receive times."""

    data: bytes
    frame_id: int
    capture_ts: float
    received_ts: float
    received_perf: float


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def rep_out(rep: RepRecord) -> RepOut:
    return RepOut(
        index=rep.index,
        score=rep.score,
        faults=[FaultOut(code=f.code, message=f.message) for f in rep.faults],
        range_of_motion_deg=rep.range_of_motion_deg,
        tempo_s=rep.tempo_s,
    )


def person_out(analysis: PersonAnalysis) -> PersonOut:
    person = analysis.person
    return PersonOut(
        id=person.track_id if person.track_id is not None else 0,
        score=round(float(person.score), 4),
        box=(float(person.box[0]), float(person.box[1]), float(person.box[2]), float(person.box[3])),
        keypoints=[
            (_finite(x), _finite(y), float(c) if math.isfinite(c) else 0.0)
            for x, y, c in person.keypoints.tolist()
        ],
        angles={name: _finite(value) for name, value in analysis.angles.items()},
        rep_count=analysis.rep_count,
        phase=analysis.phase,
        last_rep=rep_out(analysis.last_rep) if analysis.last_rep is not None else None,
    )


@contextlib.contextmanager
def _analysis_failures() -> Iterator[None]:
    """Turn a failure of detection or analysis into ``ServerFailureError`` (stream errors pass)."""
    try:
        yield
    except StreamClosedError:
        raise
    except Exception as exc:
        raise ServerFailureError(f"analysis failed: {type(exc).__name__}: {exc}", "analysis_failed") from exc


class StreamSession:
    """Analyses one stream's frames, newest first, and sends one ``FrameResult`` per processed frame.

    The receive side calls ``offer`` for each frame; ``run`` takes the newest waiting frame,
    decodes it in a worker thread, detects (the stream's own path: MediaPipe instance or
    the shared YOLO batcher), analyses it with the stream's engine and sends the answer.

    With a per-stream detector, decode, detection and analysis run in one worker-thread hop,
    and the detection's ``compute`` (shared by all streams) bounds how many streams do so at
    once; a stream takes its newest frame only once it holds a slot, so the wait drops stale
    frames instead of answering them late.
    """

    def __init__(
        self,
        stream_id: str,
        engine: PoseEngine,
        detection: StreamDetection,
        metrics: StreamMetrics,
        exercise: str | None = None,
        recording: StreamRecording | None = None,
        database: Database | None = None,
        flush_interval_s: float = 10.0,
        decode_limits: DecodeLimits | None = None,
    ) -> None:
        self.decode_limits = decode_limits or DecodeLimits()
        self.stream_id = stream_id
        self.recording = recording
        self.database = database
        self.engine = engine
        self.detection = detection
        self.metrics = metrics
        self.exercise = exercise
        self.slot: LatestSlot[RawFrame] = LatestSlot()
        self.frames_received = 0
        self.frames_processed = 0
        self.frames_dropped = 0
        self._reported_reps: dict[int, int] = {}
        self._closed = False
        self.flush_interval_s = flush_interval_s
        self._last_flush = time.monotonic()
        label = metrics.stream_label(stream_id)
        self._received = metrics.frames_received.labels(label)
        self._processed = metrics.frames_processed.labels(label)
        self._dropped = metrics.frames_dropped.labels(label)
        self._latency = metrics.end_to_end_seconds.labels(label)

    def offer(self, frame: RawFrame) -> None:
        """Hand a new frame to the stream; a frame still waiting is dropped (and counted)."""
        self.frames_received += 1
        self._received.inc()
        recorder = self.recording.recorder if self.recording is not None else None
        if recorder is not None:
            recorder.note_received()
        if self.slot.put(frame):
            self.frames_dropped += 1
            self._dropped.inc()
            if recorder is not None:
                recorder.note_dropped()

    async def run(self, send: SendFn) -> None:
        """Answer frames until the slot is closed and empty.

        Raises:
            UnsupportedFrameError: a frame that is not a whole JPEG/PNG image.
            ServerFailureError: the detector or the analysis failed.
            StreamClosedError: whatever ``send`` raises to end the stream.
        """
        while True:
            try:
                await self.slot.ready()
            except SlotClosedError:
                return
            compute = self.detection.compute
            async with compute if compute is not None else contextlib.nullcontext():
                raw, dropped = self.slot.take_nowait()
                result = await self.process(raw, dropped)
            await send(result.model_dump_json())
            self._latency.observe(time.perf_counter() - raw.received_perf)
            if self.recording is not None and time.monotonic() - self._last_flush >= self.flush_interval_s:
                await self._flush()

    async def _flush(self) -> None:
        """Commit what was recorded so far; a database failure is logged, the stream goes on."""
        assert self.recording is not None
        self._last_flush = time.monotonic()
        try:
            await asyncio.to_thread(self.recording.recorder.flush)
        except StorageError as exc:
            log.error(
                "could not flush a stream's recording", extra={"stream_id": self.stream_id, "error": str(exc)}
            )

    async def process(self, raw: RawFrame, dropped: int) -> FrameResult:
        """Decode, detect and analyse one frame into its answer (see ``run`` for the errors)."""
        start = time.perf_counter()
        detect_now = self.detection.detect_now
        if detect_now is not None:
            analysis, decoded, detected = await asyncio.to_thread(self._analyse_now, raw, detect_now)
        else:
            image = await asyncio.to_thread(decode_frame, raw.data, self.decode_limits)
            decoded = time.perf_counter()
            frame = Frame(image=image, timestamp=raw.capture_ts, index=raw.frame_id)
            with _analysis_failures():
                detections = await self.detection.detect(frame)
                detected = time.perf_counter()
                analysis = await asyncio.to_thread(self.engine.analyse, frame, detections)
        self.metrics.decode_seconds.observe(decoded - start)
        self.frames_processed += 1
        self._processed.inc()
        self._count_reps(analysis)
        if self.recording is not None:
            self.recording.recorder.add_frame(analysis)
        timings = {
            "decode": (decoded - start) * 1000.0,
            "detect": (detected - decoded) * 1000.0,
            **analysis.timings_ms,
        }
        now = time.time()
        return FrameResult(
            stream_id=self.stream_id,
            frame_id=raw.frame_id,
            capture_ts=raw.capture_ts,
            received_ts=raw.received_ts,
            processed_ts=now,
            latency_ms=(time.perf_counter() - raw.received_perf) * 1000.0,
            dropped=dropped,
            width=analysis.width,
            height=analysis.height,
            people=[person_out(p) for p in analysis.people],
            rep_count=self.engine.rep_count(),
            timings_ms={k: round(v, 3) for k, v in timings.items()},
        )

    def _analyse_now(
        self, raw: RawFrame, detect_now: Callable[[Frame], Detections]
    ) -> tuple[FrameAnalysis, float, float]:
        """Decode, detect and analyse in this (worker) thread; returns the analysis and the
        ``perf_counter`` times at which decoding and detection ended."""
        image = decode_frame(raw.data, self.decode_limits)
        decoded = time.perf_counter()
        frame = Frame(image=image, timestamp=raw.capture_ts, index=raw.frame_id)
        with _analysis_failures():
            detections = detect_now(frame)
            detected = time.perf_counter()
            return self.engine.analyse(frame, detections), decoded, detected

    def _count_reps(self, analysis: FrameAnalysis) -> None:
        """Count each completed rep once in the metrics (the engine repeats ``last_rep`` every frame)."""
        exercise = self.exercise or "none"
        for person in analysis.people:
            rep = person.last_rep
            track = person.person.track_id if person.person.track_id is not None else 0
            if rep is None or self._reported_reps.get(track, 0) >= rep.index:
                continue
            self._reported_reps[track] = rep.index
            self.metrics.reps.labels(exercise).inc()
            self.metrics.form_score.labels(exercise).observe(rep.score)

    def stopped(self) -> StoppedMessage:
        """The stream's totals."""
        return StoppedMessage(
            stream_id=self.stream_id,
            frames_received=self.frames_received,
            frames_processed=self.frames_processed,
            frames_dropped=self.frames_dropped,
            rep_count=self.engine.rep_count(),
            reps=[rep_out(r) for r in self.engine.reps()],
        )

    def _finish_recording(self, status: str, reason: str | None) -> None:
        if self.recording is not None and self.database is not None:
            self.recording.finish(self.database, status, reason)

    async def close(self, status: str = "completed", reason: str | None = None) -> None:
        """Stop taking frames, commit the recording with ``status`` and release the detector.

        When cancelled meanwhile (the connection torn down), both are done at once, blocking.
        Later calls do nothing.
        """
        if self._closed:
            return
        self._closed = True
        self.slot.close()
        try:
            await asyncio.to_thread(self._finish_recording, status, reason)
        except asyncio.CancelledError:
            self._finish_recording(status, reason)
            self.detection.release_now()
            raise
        try:
            await self.detection.release()
        except asyncio.CancelledError:
            self.detection.release_now()
            raise
