"""uvicorn's WebSocket protocol with a read deadline: a client that stops reading is noticed in time.

A send only blocks once the kernel buffers on both ends and the transport's own buffer are full;
on loopback that is several hundred KiB, seconds of answers, so a send timeout alone notices a
client that stopped reading long after the timeout.  Instead the server pings every
``ping_interval`` and expects the pong within the deadline.  Pings travel behind the answers
already sent, so a pong is proof that the client read everything sent before its ping; a client
(or client library) that stops reading stops answering, whatever its kernel buffers.  A client
that reads slowly but keeps up, or a slow link, answers each ping within the deadline.  Time
the server itself does not read (uvicorn pauses reading until the app takes the last message)
is not held against the client.

When the deadline passes, the app is told through the ASGI scope extension ``READ_DEADLINE``
(``{"expired": asyncio.Event, "seconds": float}``) and closes the stream with its code and
reason; the close frame is queued behind the unread answers (the client sees it if it reads
on), and the connection is torn down ``close_timeout`` later if the client still has not read
it.  uvicorn's own keepalive (``ws_ping_timeout``) would fail the connection with 1011 instead,
which tells the client the server failed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

READ_DEADLINE = "pose_analyzer.read_deadline"
# Pings go out at least this often; a client that stops reading is closed within
# deadline + ping interval (+ event-loop latency).
MAX_PING_INTERVAL_S = 1.0
# A deadline that passes while the server itself is not reading is checked again this often.
RECHECK_S = 0.05


def ping_interval(deadline_s: float) -> float:
    """How often to ping for ``deadline_s``: a quarter of it, at most ``MAX_PING_INTERVAL_S``."""
    return min(MAX_PING_INTERVAL_S, deadline_s / 4.0)


class ReadDeadlineProtocol(WebSocketsSansIOProtocol):
    """See the module doc; ``read_deadline_protocol`` makes one for a given deadline."""

    deadline_s: float = 5.0

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.ping_interval = ping_interval(self.deadline_s)
        self.ping_timeout = self.deadline_s
        self.expired = asyncio.Event()
        self._teardown: asyncio.TimerHandle | None = None

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # absent when the handshake was refused
        if scope is not None:
            scope["extensions"][READ_DEADLINE] = {"expired": self.expired, "seconds": self.deadline_s}

    def keepalive_timeout(self) -> None:
        """The pong did not come within the deadline: tell the app, let its close through."""
        self.pong_timer = None
        if self.close_sent or self.transport.is_closing():
            return
        if self.read_paused:
            # Reading waits for the app to take the last message (e.g. while a stream's detector
            # starts): the pong may be in our own receive buffer.  Look again once it is read.
            self.pong_timer = self.loop.call_later(RECHECK_S, self.keepalive_timeout)
            return
        self.pending_ping_payload = None
        self.expired.set()
        # The client reads nothing: the app's close must not wait for the buffers to drain.
        self.writable.set()
        self._teardown = self.loop.call_later(self.deadline_s + self.close_timeout, self._abort)

    def pause_writing(self) -> None:
        if not self.expired.is_set():  # once expired, sends (the close) go to the buffer at once
            super().pause_writing()

    def _abort(self) -> None:
        """The client never read its close: drop the connection (and the answers it left)."""
        self._teardown = None
        if not self.disconnected:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._teardown is not None:
            self._teardown.cancel()
            self._teardown = None
        super().connection_lost(exc)


def read_deadline_protocol(deadline_s: float) -> type[ReadDeadlineProtocol]:
    """A ``ReadDeadlineProtocol`` class for ``uvicorn.Config(ws=...)`` with ``deadline_s``."""
    if deadline_s <= 0:
        raise ValueError(f"the read deadline must be positive, got {deadline_s}")
    return type("ReadDeadlineProtocol", (ReadDeadlineProtocol,), {"deadline_s": deadline_s})
