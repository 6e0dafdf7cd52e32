"""Reading a stream's messages in tests: frame answers, with the ``rep`` messages that announce
reps once committed (they may come between any two answers)."""

from __future__ import annotations

from typing import Any

from starlette.testclient import WebSocketTestSession


def next_answer(ws: WebSocketTestSession, reps: list[dict[str, Any]]) -> dict[str, Any]:
    """The next message that is not a ``rep`` (a frame answer, an error...); the ``rep`` messages
    before it are appended to ``reps``."""
    while True:
        message: dict[str, Any] = ws.receive_json()
        if message["type"] != "rep":
            return message
        reps.append(message)
