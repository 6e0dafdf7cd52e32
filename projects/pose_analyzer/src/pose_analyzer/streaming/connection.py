"""The life of one stream connection: admit, receive, validate, answer, close with a code and reason.

It talks to the client through a small ``Channel`` (``channel.py``; the WebSocket route adapts
Starlette's WebSocket to it), so it knows nothing of FastAPI and tests can drive it directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from pydantic import ValidationError

from pose_analyzer.detection.registry import angle_tolerance, multi_person
from pose_analyzer.engine import PoseEngine
from pose_analyzer.exercises.definition import shipped_exercise
from pose_analyzer.schemas import (
    CLIENT_MESSAGE,
    ErrorMessage,
    FrameHeader,
    StartedMessage,
    StartMessage,
    StopMessage,
)
from pose_analyzer.settings import PoseSettings
from pose_analyzer.storage import Database
from pose_analyzer.streaming.channel import Channel
from pose_analyzer.streaming.errors import (
    ClientGoneError,
    FrameTooLargeError,
    ServiceRestartError,
    StorageFailedError,
    StreamClosedError,
    StreamPolicyError,
)
from pose_analyzer.streaming.hub import StreamHub
from pose_analyzer.streaming.image_header import DecodeLimits
from pose_analyzer.streaming.joint3d import Joined3D, join_3d
from pose_analyzer.streaming.opening import CaptureClock, open_recording, reference_of
from pose_analyzer.streaming.session import RawFrame, StreamSession
from pose_analyzer.streaming.watched import WatchedReceive, WatchFiredError
from pose_analyzer.types import FrameCounts
from service_kit.errors import InvalidInputError, ServiceError, unexpected_error

log = logging.getLogger(__name__)

NORMAL_CLOSURE = 1000


class StreamConnection:
    """Runs one connection (see ``schemas`` for the protocol); create one per WebSocket."""

    def __init__(
        self,
        hub: StreamHub,
        settings: PoseSettings,
        database: Database | None,
        stream_id: str,
        channel: Channel,
        session_id: str | None = None,
    ) -> None:
        self.hub = hub
        # The URL's ``?session_id=`` (what a load balancer routes by): start's default session.
        self.url_session_id = session_id
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
        self._clock = CaptureClock()
        # Set by ``interrupt`` (the service is stopping): the receive loop ends with it.
        self._interrupt: ServiceRestartError | None = None
        self._interrupted = asyncio.Event()
        self._joined: Joined3D | None = None  # the stream's 3D session, when start named a rig
        # What ends a wait for the next message: the interrupt, a stalled client, the processor.
        self._watched = WatchedReceive()
        self._watches: tuple[asyncio.Future[Any], ...] = ()

    async def send(self, text: str) -> None:
        """Send one answer, waiting at most the send timeout for a client that does not read.

        A send blocks only once the socket buffers are full (seconds of answers), so this is the
        fallback; ``Channel.stalled`` notices a client that stopped reading within the timeout.

        Raises:
            StreamPolicyError: the client did not take the answer in time.
        """
        try:
            async with self._send_lock:
                await asyncio.wait_for(self.channel.send_text(text), self.settings.stream_send_timeout_s)
        except TimeoutError:
            raise self._slow_client() from None

    def _slow_client(self) -> StreamPolicyError:
        timeout = self.settings.stream_send_timeout_s
        return StreamPolicyError(f"the client did not read its answers for {timeout:g} s", "slow_client")

    def interrupt(self, reason: str) -> None:
        """End the stream because the service stops: recorded "interrupted", closed with 1012."""
        if self._interrupt is None:
            self._interrupt = ServiceRestartError(reason)
            self._interrupted.set()

    async def serve(self, authorised: bool) -> None:
        """Run the connection to its end; never raises for the client's faults.

        A stream the service cannot take (no key, a busy id, the limit, a draining service) is
        refused with its close code before anything is recorded.
        """
        try:
            if not authorised:
                raise StreamPolicyError("missing or wrong API key", "unauthorized")
            self.hub.register(self.stream_id, self.interrupt)
        except StreamClosedError as exc:
            self._count(exc)
            await self._close_for(exc)
            return
        try:
            await self._serve_admitted()
        finally:
            self.hub.ended()  # after its end is committed: a draining service may exit now

    async def _serve_admitted(self) -> None:
        interrupted = asyncio.ensure_future(self._interrupted.wait())
        stalled = asyncio.ensure_future(self.channel.stalled())
        self._watches = (interrupted, stalled)
        for watch in self._watches:
            self._watched.watch(watch)
        try:
            await self._loop()
        except ClientGoneError:
            # The connection went while we sent: the client left (nothing to close), or the
            # service stopped under it.  Not the stream's failure.
            if self._interrupt is not None:
                self._end = ("interrupted", str(self._interrupt))
        except StreamClosedError as exc:
            await self._end_for(exc)
        except Exception as exc:
            request_id, _ = unexpected_error(exc, f"stream {self.stream_id}")
            await self._end_for(StreamClosedError(f"internal error of the service (request id {request_id})"))
        finally:
            interrupted.cancel()
            stalled.cancel()
            await self._shutdown()

    async def _end_for(self, exc: StreamClosedError) -> None:
        self._count(exc)
        self._end = ("interrupted" if isinstance(exc, ServiceRestartError) else "failed", str(exc))
        if isinstance(exc, ServiceRestartError):
            await self._finish_frames()
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

    async def _finish_frames(self) -> None:
        """Answer the frame in analysis and the one waiting, and announce the reps they complete
        once committed, before the stream is cut, so that every rep the service stored was
        announced too; bounded by the send timeout."""
        if self.session is None or self._processor is None or self._processor.done():
            return
        self.session.slot.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(self._processor), self.settings.stream_send_timeout_s)

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
        await self._leave_3d()

    async def _leave_3d(self) -> None:
        if self._joined is not None:
            joined, self._joined = self._joined, None
            await joined.leave()

    async def _loop(self) -> None:
        while True:
            message = await self._receive()
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

    async def _receive(self) -> str | bytes | None:
        """The next message, or the processor's failure if it failed first.

        Raises:
            ServiceRestartError: the service is stopping (``interrupt``).
            StreamPolicyError: the client stopped reading (``Channel.stalled``).
        """
        self._raise_for_watches()  # one that ended while the last message was handled
        try:
            return await self._watched.receive(self.channel.receive)
        except WatchFiredError:
            self._raise_for_watches()
            raise StreamClosedError("a watch of the stream fired without an outcome") from None

    def _raise_for_watches(self) -> None:
        """Raise what a watch that ended means: the interrupt, a stalled client, the processor's end."""
        if self._interrupt is not None:
            raise self._interrupt
        if any(watch.done() for watch in self._watches):  # not interrupted: the client stalled
            raise self._slow_client()
        if self._processor is not None and self._processor.done():
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

    def _session_of(self, message: StartMessage) -> str | None:
        """The session to record into: start's, else the URL's; refused when they differ."""
        if message.session_id is None or self.url_session_id is None:
            return message.session_id or self.url_session_id
        if message.session_id != self.url_session_id:
            raise InvalidInputError(
                "start's session_id differs from the URL's session_id", code="session_mismatch"
            )
        return message.session_id

    async def _start(self, message: StartMessage, announce: bool = True) -> None:
        exercise = shipped_exercise(message.exercise)
        session_id = self._session_of(message)
        reference = reference_of(message)
        path = self.hub.path(message.backend)
        counts = FrameCounts()
        recording, writer = await open_recording(
            self.database, self.settings, self.stream_id, path.backend, message, session_id, counts
        )
        try:
            if message.rig is not None or message.camera is not None:
                self._joined = await join_3d(
                    self.hub.sessions3d,
                    self.database,
                    self.metrics,
                    key=recording.session_id
                    if recording is not None
                    else message.session_id or self.stream_id,
                    rig_name=message.rig,
                    camera=message.camera,
                    stream_id=self.stream_id,
                    exercise=message.exercise,
                    deadline_s=self.settings.sync_deadline_s,
                    multi_person=multi_person(path.backend),
                )
            detector = await self.hub.detector(path)
        except BaseException as exc:
            if writer is not None:
                await writer.close(
                    "failed", str(exc) if isinstance(exc, ServiceError) else "the backend could not start"
                )
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
            rep_offset=recording.earlier_reps if recording is not None else 0,
            joint=self._joined,
        )
        self._processor = asyncio.ensure_future(self.session.run(self.send))
        self._watched.watch(self._processor)
        if not announce:
            return
        await self.send(
            StartedMessage(
                stream_id=self.stream_id,
                backend=path.backend,
                exercise=message.exercise,
                person_of_interest=message.person_of_interest,
                session_id=(recording.session_id if recording is not None else None),
                rep_count=self.session.rep_offset,
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
        capture_ts = self._clock.take(header.capture_ts if header is not None else None, now)
        self.session.offer(
            RawFrame(
                data=data,
                frame_id=header.frame_id if header and header.frame_id is not None else self._sequence,
                capture_ts=capture_ts,
                received_ts=now,
                received_perf=time.perf_counter(),
            )
        )

    async def _stop(self) -> None:
        self._end = ("completed", "stopped by the client")
        if self.session is not None and self._processor is not None:
            self.session.slot.close()
            await self._processor  # answers the frame still waiting; raises if that fails
            # Committed before ``stopped`` is sent: a client that got it finds the rows stored.
            await self.session.close(*self._end)
            await self._leave_3d()  # its 3D moments stored too
            await self.send(self.session.stopped().model_dump_json())
        with contextlib.suppress(Exception):
            await self.channel.close(NORMAL_CLOSURE, "stopped by the client")
