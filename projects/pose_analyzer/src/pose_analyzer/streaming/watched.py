"""Await a message in the calling task while other futures may end the wait (``WatchedReceive``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class WatchFiredError(Exception):
    """A watched future completed while ``WatchedReceive.receive`` waited."""


class WatchedReceive:
    """``receive`` awaits a message in the calling task; a watched future that completes meanwhile
    cancels that wait (its done callback), and only that wait: a watch that completes while the
    task does something else is the caller's to check before it waits again.

    This replaces, per message, a task for the receive and an ``asyncio.wait`` over it and the
    watches: on uvloop about 9.9 us a message against 2.7 us for a plain await (measured), at
    16 streams x 30 fps x 2 messages (header and frame) a second.  Use from one task at a time.
    """

    def __init__(self) -> None:
        self._waiting: asyncio.Task[Any] | None = None
        self._woken = False

    def watch(self, future: asyncio.Future[Any]) -> None:
        """End a wait in ``receive`` once ``future`` is done (result, exception or cancelled)."""
        future.add_done_callback(self._wake)

    def _wake(self, _future: asyncio.Future[Any]) -> None:
        if self._waiting is not None and not self._woken:
            self._woken = True
            self._waiting.cancel()

    async def receive(self, receive: Callable[[], Awaitable[T]]) -> T:
        """``await receive()`` in the calling task.

        Raises:
            WatchFiredError: a watched future completed first (the receive was cancelled).
            asyncio.CancelledError: the task itself was cancelled (from elsewhere).
        """
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("WatchedReceive.receive must run in a task")
        self._waiting = task
        try:
            return await receive()
        except asyncio.CancelledError:
            # Our own cancel, and no other one pending: the wait ended for a watch.
            if self._woken and task.uncancel() == 0:
                raise WatchFiredError from None
            raise
        finally:
            self._waiting = None
            self._woken = False
