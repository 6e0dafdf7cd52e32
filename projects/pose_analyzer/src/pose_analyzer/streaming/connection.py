"""The life of one stream connection: admit, receive, validate, answer, close with a code and reason.

It talks to the client through a small ``Channel`` (the WebSocket route adapts Starlette's
WebSocket to it), so it knows nothing of FastAPI and tests can drive it directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from typing import Any, Protocol

import numpy as np
from pydantic import ValidationError

from pose_analyzer.detection.registry import angle_tolerance
from pose_analyzer.engine import PoseEngine, reference_columns
from pose_analyzer.exercises.definition import shipped_exercise
from pose_analyzer.exercises.reference import ReferenceMotion
from pose_analyzer.schemas import (
    CLIENT_MESSAGE,
    ErrorMessage,
    FrameHeader,
    StartedMessage,
    StartMessage,
    StopMessage,
)
from pose_analyzer.settings import PoseSettings
from pose_analyzer.storage import Database, SessionNotFoundError
from pose_analyzer.streaming.errors import (
    FrameTooLargeError,
    InvalidCaptureTimeError,
    ServiceRestartError,
    StorageFailedError,
    StreamClosedError,
    StreamPolicyError,
)
from pose_analyzer.streaming.hub import StreamHub
from pose_analyzer.streaming.image_header import DecodeLimits
from pose_analyzer.streaming.recording import StreamRecording
from pose_analyzer.streaming.session import RawFrame, StreamSession
from pose_analyzer.streaming.writer import RecordingWriter, RetryPolicy
from pose_analyzer.types import FrameCounts
from service_kit.errors import InvalidInputError, ServiceError, unexpected_error

log = logging.getLogger(__name__)

NORMAL_CLOSURE = 1000
# Capture times are seconds of the client's clock; no clock in use counts past 1e12 s (31 700
# years), and beyond 2**53 a float cannot even tell consecutive seconds apart.
MAX_ABS_CAPTURE_TS = 1e12


class Channel(Protocol):
    """The client side of a stream as the connection needs it."""

    async def receive(self) -> str | bytes | None:
        """The next text or binary message; None when the client has gone."""

    async def send_text(self, text: str) -> None:
        """Send one text message."""

    async def close(self, code: int, reason: str) -> None:
        """Close with ``code`` and ``reason``."""


class StreamConnection:
    """Runs one connection (see ``schemas`` for the protocol); create one per WebSocket."""

    def __init__(
        self,
        hub: StreamHub,
        settings: PoseSettings,
        database: Database | None,
        stream_id: str,
        channel: Channel,
    ) -> None:
        self.hub = hub
        self.settings = settings
        self.database = database
        self.stream_id = stream_id
        self.channel = channel
        self.metrics = hub.metrics
        self.session: StreamSession | None = None
        self._processor: asyncio.Task[None] | None = None
        self._header: FrameHeader | None = None
        self._sequence = 0
        self._send_lock = asyncio.Lock()
        self._end: tuple[str, str] = ("completed", "client disconnected")
        self._last_capture_ts = -math.inf
        # Set by ``interrupt`` (the service is stopping): the receive loop ends with it.
        self._interrupt: ServiceRestartError | None = None
        self._interrupted = asyncio.Event()

    async def send(self, text: str) -> None:
        """Send one answer, waiting at most the send timeout for a client that does not read.

        Raises:
            StreamPolicyError: the client did not take the answer in time.
        """
        timeout = self.settings.stream_send_timeout_s
        try:
            async with self._send_lock:
                await asyncio.wait_for(self.channel.send_text(text), timeout)
        except TimeoutError:
            raise StreamPolicyError(
                f"the client did not read its answers for {timeout:g} s", "slow_client"
            ) from None

    def interrupt(self, reason: str) -> None:
        """End the stream because the service stops: recorded "interrupted", closed with 1012."""
        if self._interrupt is None:
            self._interrupt = ServiceRestartError(reason)
            self._interrupted.set()

    async def serve(self, authorised: bool) -> None:
        """Run the connection to its end; never raises for the client's faults."""
        try:
            if not authorised:
                raise StreamPolicyError("missing or wrong API key", "unauthorized")
            self.hub.register(self.stream_id, self.interrupt)
        except StreamClosedError as exc:
            self._count(exc)
            await self._close_for(exc)
            return
        interrupted = asyncio.ensure_future(self._interrupted.wait())
        try:
            await self._loop(interrupted)
        except StreamClosedError as exc:
            await self._end_for(exc)
        except Exception as exc:
            request_id, _ = unexpected_error(exc, f"stream {self.stream_id}")
            await self._end_for(StreamClosedError(f"internal error of the service (request id {request_id})"))
        finally:
            interrupted.cancel()
            await self._shutdown()

    async def _end_for(self, exc: StreamClosedError) -> None:
        self._count(exc)
        self._end = ("interrupted" if isinstance(exc, ServiceRestartError) else "failed", str(exc))
        if isinstance(exc, StorageFailedError | ServiceRestartError):
            # The database is what failed, or the process is going away: the client hears at
            # once, then the stream's end is recorded (retried by the writer).
            if isinstance(exc, StorageFailedError):
                with contextlib.suppress(Exception):
                    await self.send(ErrorMessage.of(exc).model_dump_json())
            await self._close_for(exc)
            await self._shutdown()
        else:
            # Committed before the close goes out: once the client sees the close, the
            # connection may be torn down (and this task cancelled) at any moment.
            await self._shutdown()
            await self._close_for(exc)

    def _count(self, exc: StreamClosedError) -> None:
        self.metrics.websocket_errors.labels(exc.metric_reason).inc()
        log.info(
            "stream closed", extra={"stream_id": self.stream_id, "code": exc.close_code, "reason": str(exc)}
        )

    async def _close_for(self, exc: StreamClosedError) -> None:
        with contextlib.suppress(Exception):  # the client may already be gone
            await self.channel.close(exc.close_code, str(exc)[:120])

    async def _shutdown(self) -> None:
        # The server may be cancelling this task (shutdown, or the client's connection gone):
        # free the stream's place first, with no await that a cancellation could cut short.
        self.hub.unregister(self.stream_id)
        if self._processor is not None and not self._processor.done():
            self._processor.cancel()
        if self.session is not None:
            try:
                await self.session.close(*self._end)
            except StorageFailedError:
                # Logged with its request id; a stream left "open" is marked interrupted at the
                # next start-up.
                log.error("a stream's end could not be recorded", extra={"stream_id": self.stream_id})

    async def _loop(self, interrupted: asyncio.Future[Any]) -> None:
        while True:
            message = await self._receive(interrupted)
            if message is None:
                return  # the client left; nothing to close
            if isinstance(message, bytes):
                await self._on_frame(message)
                continue
            try:
                if await self._on_text(message):
                    return
            except StreamClosedError:
                raise
            except ServiceError as err:  # a refused message: answered, the stream stays open
                self.metrics.websocket_errors.labels(err.code).inc()
                await self.send(ErrorMessage.of(err).model_dump_json())

    async def _receive(self, interrupted: asyncio.Future[Any]) -> str | bytes | None:
        """The next message, or the processor's failure if it failed first.

        Raises:
            ServiceRestartError: the service is stopping (``interrupt``).
        """
        receiving = asyncio.ensure_future(self.channel.receive())
        waits: set[asyncio.Future[Any]] = {receiving, interrupted}
        if self._processor is not None:
            waits.add(self._processor)
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if receiving.done():
            return receiving.result()
        receiving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiving
        if self._interrupt is not None:
            raise self._interrupt
        assert self._processor is not None  # the one awaitable left that can have ended
        self._processor.result()  # raises the StreamClosedError that ended it
        raise StreamClosedError("the stream's processor ended unexpectedly")

    async def _on_text(self, text: str) -> bool:
        """Handle a control message; returns True when the stream ended (``stop``)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"text messages must be JSON: {exc}", code="invalid_json") from None
        try:
            message = CLIENT_MESSAGE.validate_python(data)
        except ValidationError as exc:
            details: dict[str, object] = {
                "errors": exc.errors(include_url=False, include_context=False, include_input=False)
            }
            raise InvalidInputError("not a valid client message", details, code="invalid_message") from None
        if isinstance(message, FrameHeader):
            self._header = message
        elif isinstance(message, StartMessage):
            if self.session is not None:
                raise InvalidInputError(
                    "start must come once, before the first frame", code="already_started"
                )
            await self._start(message)
        elif isinstance(message, StopMessage):
            await self._stop()
            return True
        return False

    async def _start(self, message: StartMessage, announce: bool = True) -> None:
        exercise = shipped_exercise(message.exercise)
        reference = None
        if message.reference_rep is not None:
            ref = message.reference_rep
            try:
                reference = ReferenceMotion(
                    tuple(ref.angles), np.asarray(ref.series, dtype=np.float64), ref.tolerance_deg
                )
                reference_columns(reference)
            except ValueError as exc:
                raise InvalidInputError(f"invalid reference rep: {exc}", code="invalid_reference") from None
        path = self.hub.path(message.backend)
        counts = FrameCounts()
        recording = None
        if self.database is not None:
            try:
                recording = await asyncio.to_thread(
                    StreamRecording.open,
                    self.database,
                    self.stream_id,
                    path.backend,
                    message.exercise,
                    message.session_id,
                    counts,
                )
            except SessionNotFoundError as exc:
                raise InvalidInputError(str(exc), code="unknown_session") from None
        writer = None
        if recording is not None and self.database is not None:
            retry = RetryPolicy(self.settings.stream_commit_attempts, self.settings.stream_commit_backoff_s)
            writer = RecordingWriter(
                recording, self.database, self.settings.stream_flush_interval_s, retry=retry
            )
            writer.start()
        try:
            detector = await self.hub.detector(path)
        except BaseException:
            if writer is not None:
                await writer.close("failed", "the backend could not start")
            raise
        engine = PoseEngine(
            tracker=path.tracker(),
            exercise=exercise,
            person_of_interest=message.person_of_interest,
            reference=reference,
            angle_tolerance_deg=angle_tolerance(path.backend),
        )
        self.session = StreamSession(
            self.stream_id,
            engine,
            detector,
            self.metrics,
            message.exercise,
            writer,
            counts,
            DecodeLimits(self.settings.max_image_pixels, self.settings.verify_jpeg_data),
        )
        self._processor = asyncio.ensure_future(self.session.run(self.send))
        if not announce:
            return
        await self.send(
            StartedMessage(
                stream_id=self.stream_id,
                backend=path.backend,
                exercise=message.exercise,
                person_of_interest=message.person_of_interest,
                session_id=(recording.session_id if recording is not None else None),
            ).model_dump_json()
        )

    async def _on_frame(self, data: bytes) -> None:
        limit = self.settings.max_frame_bytes
        if len(data) > limit:
            raise FrameTooLargeError(f"frame of {len(data)} bytes is over the {limit} byte limit")
        if self.session is None:
            await self._start(StartMessage(), announce=False)
        assert self.session is not None
        self._sequence += 1
        header, self._header = self._header, None
        now = time.time()
        capture_ts = now
        if header is not None and header.capture_ts is not None:
            capture_ts = self._checked_capture_ts(header.capture_ts)
        self._last_capture_ts = capture_ts
        self.session.offer(
            RawFrame(
                data=data,
                frame_id=header.frame_id if header and header.frame_id is not None else self._sequence,
                capture_ts=capture_ts,
                received_ts=now,
                received_perf=time.perf_counter(),
            )
        )

    def _checked_capture_ts(self, capture_ts: float) -> float:
        """The client's capture time, if it is one rep timing can use.

        Raises:
            InvalidCaptureTimeError: not finite, beyond +-1e12 s, or earlier than the previous frame's.
        """
        if not math.isfinite(capture_ts) or abs(capture_ts) >= MAX_ABS_CAPTURE_TS:
            raise InvalidCaptureTimeError(
                f"capture_ts must be a finite number of seconds below {MAX_ABS_CAPTURE_TS:g} in size"
            )
        if capture_ts < self._last_capture_ts:
            raise InvalidCaptureTimeError(
                f"capture_ts went backwards ({capture_ts:.6f} s after {self._last_capture_ts:.6f} s); "
                "it must not decrease within a stream"
            )
        return capture_ts

    async def _stop(self) -> None:
        self._end = ("completed", "stopped by the client")
        if self.session is not None and self._processor is not None:
            self.session.slot.close()
            await self._processor  # answers the frame still waiting; raises if that fails
            # Committed before ``stopped`` is sent: a client that got it finds the rows stored.
            await self.session.close(*self._end)
            await self.send(self.session.stopped().model_dump_json())
        with contextlib.suppress(Exception):
            await self.channel.close(NORMAL_CLOSURE, "stopped by the client")
