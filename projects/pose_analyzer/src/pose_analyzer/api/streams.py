"""The live stream WebSocket: ``/ws/streams/{stream_id}`` (protocol in ``pose_analyzer.schemas``)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from pose_analyzer.resources import WsResourcesDep
from pose_analyzer.streaming.connection import StreamConnection
from pose_analyzer.streaming.errors import ClientGoneError
from pose_analyzer.ws_protocol import READ_DEADLINE
from service_kit.ops import websocket_authorised

router = APIRouter(tags=["streams"])


class _WebSocketChannel:
    """Starlette's WebSocket as the stream connection's Channel."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket

    async def receive(self) -> str | bytes | None:
        try:
            message = await self.websocket.receive()
        except WebSocketDisconnect:
            return None
        if message["type"] == "websocket.disconnect":
            return None
        if message.get("bytes") is not None:
            return bytes(message["bytes"])
        return str(message.get("text") or "")

    async def send_text(self, text: str) -> None:
        try:
            await self.websocket.send_text(text)
        except WebSocketDisconnect as exc:  # Starlette's word for a send on a lost connection
            raise ClientGoneError(f"the connection is gone ({exc.code})") from None

    async def close(self, code: int, reason: str) -> None:
        await self.websocket.close(code=code, reason=reason)

    async def stalled(self) -> None:
        deadline = self.websocket.scope.get("extensions", {}).get(READ_DEADLINE)
        if deadline is None:  # another server (or a test client): the send timeout alone guards
            await asyncio.Event().wait()
            return
        await deadline["expired"].wait()


@router.websocket("/ws/streams/{stream_id}")
async def stream(
    websocket: WebSocket, stream_id: str, resources: WsResourcesDep, session_id: str | None = None
) -> None:
    """One camera stream: binary JPEG/PNG frames in, one JSON answer per processed frame out.

    ``?session_id=`` names the session to record into (as ``start.session_id`` does); being in the
    URL, it is what a load balancer hashes so that every camera of a session lands on one replica.
    """
    # Accept first, so a refused client sees the close code and reason (a refused handshake
    # would only give it an HTTP 403).
    await websocket.accept()
    connection = StreamConnection(
        resources.streams,
        resources.settings,
        resources.database,
        stream_id,
        _WebSocketChannel(websocket),
        session_id=session_id,
    )
    await connection.serve(websocket_authorised(websocket))
