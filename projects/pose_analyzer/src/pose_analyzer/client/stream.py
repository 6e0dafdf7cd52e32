"""One camera's connection to the service, kept alive: start, frames, stop, and reconnection.

Protocol (``pose_analyzer.schemas``): ``start`` (exercise, session id) -> ``started``; then per
frame a ``frame`` header (id, capture time) and the JPEG; ``frame`` answers, and a ``rep``
message for each rep once the service committed it; ``stop`` ->
``stopped`` -> close 1000.  A connection lost for a reason that may pass (the network, a replica
killed, restarting or draining: close codes 1001/1006/1011/1012/1013/1014, a refused or reset
TCP connection, a proxy's 502/503/504) is opened again after a capped exponential backoff with
jitter, and ``start`` is sent again with the same session id: the service continues the stream
in that session, its rep count going on from the database.  Other failures (a wrong API key, an
unknown session or exercise, a frame the service refuses, a certificate that does not verify)
end the stream with ``StreamFailedError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from pose_analyzer.client.sources import EncodedFrame, FrameSource
from pose_analyzer.client.stats import StreamStats

log = logging.getLogger(__name__)

RETRY_CLOSE_CODES = frozenset({1000, 1001, 1006, 1011, 1012, 1013, 1014})
RETRY_HTTP_STATUSES = frozenset({429, 502, 503, 504})
# 1008 reasons that pass: the label still registered by a connection being torn down, a full replica.
RETRY_POLICY_REASONS = ("already streaming", "too many streams")

MessageHook = Callable[[str, dict[str, Any]], None]


class StreamFailedError(Exception):
    """The stream ended for a reason a reconnection would not cure (the message says which)."""


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Where and how the client streams.  ``url``: ``ws://HOST:PORT`` or ``wss://HOST:PORT``."""

    url: str
    api_key: str | None = None
    ca_file: Path | None = None
    exercise: str | None = None
    person_of_interest: int | None = None
    backend: str | None = None
    # Reconnection: wait backoff_s after the first loss, doubling up to max_backoff_s, each wait
    # drawn between half and all of it; give up after give_up_after_s without a connection.
    backoff_s: float = 0.1
    max_backoff_s: float = 5.0
    give_up_after_s: float = 120.0
    open_timeout_s: float = 10.0
    answer_timeout_s: float = 30.0
    stop_timeout_s: float = 30.0

    def ssl_context(self) -> ssl.SSLContext | None:
        """For wss/https: the system's trust store, or only ``ca_file`` when given."""
        if not self.url.startswith(("wss://", "https://")):
            return None
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)

    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key} if self.api_key else {}

    def stream_url(self, stream_id: str, session_id: str | None) -> str:
        """The stream's WebSocket URL; the session id in the query is what a balancer hashes."""
        url = f"{self.url.rstrip('/')}/ws/streams/{quote(stream_id, safe='')}"
        return f"{url}?{urlencode({'session_id': session_id})}" if session_id else url

    def backoff(self, failures: int) -> float:
        """The wait before reconnection attempt ``failures`` (1-based), with jitter."""
        ceiling = min(self.max_backoff_s, self.backoff_s * 2 ** (failures - 1))
        return float(ceiling / 2 + random.uniform(0, ceiling / 2))


def retryable(exc: BaseException) -> bool:
    """Whether a connection that ended with ``exc`` may work again later (see the module doc)."""
    if isinstance(exc, ConnectionClosed):
        code = exc.rcvd.code if exc.rcvd is not None else 1006
        if code == 1008:
            reason = exc.rcvd.reason if exc.rcvd is not None else ""
            return any(text in reason for text in RETRY_POLICY_REASONS)
        return code in RETRY_CLOSE_CODES
    if isinstance(exc, InvalidStatus):
        return exc.response.status_code in RETRY_HTTP_STATUSES
    if isinstance(exc, ssl.SSLCertVerificationError):
        return False
    return isinstance(exc, OSError | TimeoutError | InvalidHandshake)


def describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionClosed):
        if exc.rcvd is None:
            return "connection lost (1006)"
        return f"closed {exc.rcvd.code}: {exc.rcvd.reason or 'no reason'}"
    return f"{type(exc).__name__}: {exc}"


class StreamClient:
    """Streams one source to ``/ws/streams/{stream_id}`` until the source ends or ``stop`` is set.

    ``as_fast_as_possible`` sources are sent one frame per answer (nothing dropped, as fast as the
    service analyses; a frame whose answer a lost connection took is sent again on the next one);
    paced ones as the camera delivers (the service keeps the newest frame).
    ``on_message(stream_id, message)`` sees every message the service sends.
    """

    def __init__(
        self,
        config: ClientConfig,
        stream_id: str,
        source: FrameSource,
        session_id: str | None = None,
        on_message: MessageHook | None = None,
    ) -> None:
        self.config = config
        self.stream_id = stream_id
        self.source = source
        self.session_id = session_id
        self.on_message = on_message
        self.stats = StreamStats(stream_id)
        self.stopped: dict[str, Any] | None = None
        self._frame_id = 0
        self._frames: AsyncIterator[EncodedFrame] | None = None
        self._next: asyncio.Future[EncodedFrame] | None = None  # kept across reconnections
        # Lockstep: the frame in flight, set before its send (a close racing the send cannot lose
        # it) and cleared only once answered, and its frame id on the current connection.
        self._unanswered: EncodedFrame | None = None
        self._unanswered_id: int | None = None
        self._answered = asyncio.Event()  # set by the receiver on the answer of ``_unanswered_id``
        self._connected = False  # the current connection got ``started``

    async def run(self, stop: asyncio.Event) -> StreamStats:
        """Stream until the source ends or ``stop`` is set, reconnecting as the module doc says.

        Raises:
            StreamFailedError: a failure that reconnecting does not cure, or no connection for
                ``give_up_after_s``.
            SourceError: the source cannot be opened.
        """
        await asyncio.to_thread(self.source.open)
        self._frames = self.source.frames()
        failures = 0
        failing_since: float | None = None
        try:
            while True:
                self._connected = False
                try:
                    await self._connection(stop)
                    self.stats.state = "stopped"
                    return self.stats
                except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
                    if not retryable(exc):
                        raise StreamFailedError(f"{self.stream_id}: {describe(exc)}") from exc
                    self.stats.on_lost(describe(exc))
                    if self._connected:  # this connection worked: a new outage starts
                        failures, failing_since = 0, None
                    failures += 1
                    now = time.monotonic()
                    failing_since = failing_since or now
                    if now - failing_since > self.config.give_up_after_s:
                        raise StreamFailedError(
                            f"{self.stream_id}: no connection for {self.config.give_up_after_s:g} s "
                            f"({describe(exc)})"
                        ) from exc
                    delay = self.config.backoff(failures)
                    log.info("reconnecting", extra={"stream_id": self.stream_id, "in_s": round(delay, 3)})
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                    if stop.is_set():
                        self.stats.state = "stopped"
                        return self.stats
        except BaseException:
            self.stats.state = "failed"
            raise
        finally:
            await self._close_source()

    async def _close_source(self) -> None:
        if self._next is not None and not self._next.done():
            self._next.cancel()
            with contextlib.suppress(BaseException):
                await self._next
        if self._frames is not None:
            aclose = getattr(self._frames, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
        self.stats.skipped = self.source.skipped

    def _start_message(self) -> dict[str, Any]:
        start: dict[str, Any] = {
            "type": "start",
            "session_id": self.session_id,
            "exercise": self.config.exercise,
        }
        if self.config.person_of_interest is not None:
            start["person_of_interest"] = self.config.person_of_interest
        if self.config.backend is not None:
            start["backend"] = self.config.backend
        return start

    async def _connection(self, stop: asyncio.Event) -> None:
        """One connection: start, frames until the source ends or ``stop``, then stop -> stopped."""
        config = self.config
        async with connect(
            config.stream_url(self.stream_id, self.session_id),
            additional_headers=config.headers(),
            ssl=config.ssl_context(),
            open_timeout=config.open_timeout_s,
            close_timeout=5,
            max_size=16 * 1024 * 1024,
            compression=None,
            ping_interval=5,
            ping_timeout=10,
        ) as ws:
            await ws.send(json.dumps(self._start_message()))
            started = await self._expect_started(ws)
            self.session_id = started.get("session_id") or self.session_id
            replica = ws.response.headers.get("X-Pose-Replica") if ws.response is not None else None
            self.stats.on_connected(int(started.get("rep_count", 0)), replica)
            self._connected = True
            receiver = asyncio.ensure_future(self._receive(ws))
            try:
                await self._send_frames(ws, stop, receiver)
                await ws.send(json.dumps({"type": "stop"}))
                self.stats.state = "stopping"
                await asyncio.wait_for(asyncio.shield(receiver), config.stop_timeout_s)
                receiver.result()
            finally:
                if not receiver.done():
                    receiver.cancel()
                    with contextlib.suppress(BaseException):
                        await receiver

    async def _expect_started(self, ws: ClientConnection) -> dict[str, Any]:
        raw = await asyncio.wait_for(ws.recv(), self.config.answer_timeout_s)
        message: dict[str, Any] = json.loads(raw)
        if self.on_message is not None:
            self.on_message(self.stream_id, message)
        if message.get("type") != "started":
            error = message.get("error") or {}
            raise StreamFailedError(
                f"{self.stream_id}: start refused: {error.get('code', message.get('type'))}: "
                f"{error.get('message', message)}"
            )
        return message

    async def _send_frames(
        self, ws: ClientConnection, stop: asyncio.Event, receiver: asyncio.Future[None]
    ) -> None:
        assert self._frames is not None
        lockstep = not self.source.paced and self.source.is_file
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while True:
                frame = self._unanswered  # lost with its connection: sent again first
                if frame is None:
                    if self._next is None:
                        self._next = asyncio.ensure_future(anext(self._frames))
                    waits: set[asyncio.Future[Any]] = {self._next, stopping, receiver}
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if receiver.done():
                    receiver.result()  # raises how the connection ended
                    return
                if stop.is_set():
                    return
                if frame is None:
                    assert self._next is not None
                    next_frame, self._next = self._next, None
                    try:
                        frame = next_frame.result()
                    except StopAsyncIteration:
                        return
                self._frame_id += 1
                resent = frame is self._unanswered
                if lockstep:  # in flight before its send: a close racing the send cannot lose it
                    self._unanswered, self._unanswered_id = frame, self._frame_id
                    self._answered.clear()
                self.stats.on_sent(self._frame_id, resent=resent)
                await ws.send(
                    json.dumps({"type": "frame", "frame_id": self._frame_id, "capture_ts": frame.capture_ts})
                )
                await ws.send(frame.jpeg)
                if lockstep and await self._wait_answer(stopping, receiver):
                    self._unanswered = self._unanswered_id = None
        finally:
            stopping.cancel()

    async def _wait_answer(self, stopping: asyncio.Future[Any], receiver: asyncio.Future[None]) -> bool:
        """Wait for the answer of the frame in flight: True once it came, False on ``stop``.

        The answer is checked before the connection's end: the receiver hands over every message
        that arrived before a close (an answer and a 1012 in one TCP write), so when it has ended,
        the event says whether the answer was among them; only a frame still unanswered then is
        sent again (``receiver.result()`` raises how the connection ended).
        """
        answered = asyncio.ensure_future(self._answered.wait())
        try:
            done, _ = await asyncio.wait(
                {answered, stopping, receiver},
                timeout=self.config.answer_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            answered.cancel()
        if self._answered.is_set():
            return True
        if receiver.done():
            receiver.result()
        if not done:
            raise TimeoutError(f"no answer within {self.config.answer_timeout_s:g} s")
        return False

    async def _receive(self, ws: ClientConnection) -> None:
        """Handle the service's messages until ``stopped``; raises ConnectionClosed if it ends first."""
        async for raw in ws:
            if isinstance(raw, bytes):
                continue
            message: dict[str, Any] = json.loads(raw)
            if self.on_message is not None:
                self.on_message(self.stream_id, message)
            kind = message.get("type")
            if kind == "frame":
                self.stats.on_answer(message, self.session_id)
                if message.get("frame_id") == self._unanswered_id:
                    self._answered.set()
            elif kind == "rep":
                self.stats.on_rep(message, self.session_id)
            elif kind == "stopped":
                self.stopped = message
                return
            elif kind == "error":
                error = message.get("error") or {}
                self.stats.errors.append(f"{error.get('code')}: {error.get('message')}")
        # The iteration ends without an exception on a normal close (1000/1001) before ``stopped``.
        raise ConnectionClosed(ws.protocol.close_rcvd, ws.protocol.close_sent)
