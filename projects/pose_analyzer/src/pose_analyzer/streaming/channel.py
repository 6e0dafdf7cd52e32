"""The client side of a stream as ``StreamConnection`` needs it (the WebSocket route adapts
Starlette's WebSocket to it; tests drive connections through their own)."""

from __future__ import annotations

from typing import Protocol


class Channel(Protocol):
    """The client side of a stream as the connection needs it."""

    async def receive(self) -> str | bytes | None:
        """The next text or binary message; None when the client has gone."""

    async def send_text(self, text: str) -> None:
        """Send one text message.

        Raises:
            ClientGoneError: the connection is gone.
        """

    async def close(self, code: int, reason: str) -> None:
        """Close with ``code`` and ``reason``."""

    async def stalled(self) -> None:
        """Return once the client has not read what it was sent for the send timeout (the server
        pings behind the answers: ``pose_analyzer.ws_protocol``); never, where it cannot tell."""
