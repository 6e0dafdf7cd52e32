"""A bound on work done at once, with a bounded wait: beyond it, callers are told to come back later."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class BusyError(Exception):
    """Every slot is taken and the waiting line is full."""

    def __init__(self, running: int, waiting: int) -> None:
        super().__init__(f"{running} requests are running and {waiting} waiting")
        self.running = running
        self.waiting = waiting


class WorkLimit:
    """At most ``running`` holders at once and ``waiting`` more queued for a slot; use from one loop."""

    def __init__(self, running: int, waiting: int) -> None:
        if running < 1 or waiting < 0:
            raise ValueError(f"running must be >= 1 and waiting >= 0, got {running} and {waiting}")
        self.running = running
        self.waiting = waiting
        self._slots = asyncio.Semaphore(running)
        self._admitted = 0

    @property
    def admitted(self) -> int:
        """Holders and waiters now."""
        return self._admitted

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot for the block, waiting in line for it if the line has room.

        Raises:
            BusyError: the slots and the waiting line are all taken (nothing was waited for).
        """
        if self._admitted >= self.running + self.waiting:
            raise BusyError(self.running, self.waiting)
        self._admitted += 1
        try:
            async with self._slots:
                yield
        finally:
            self._admitted -= 1
