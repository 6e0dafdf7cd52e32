"""A one-item mailbox per stream: a new frame replaces the unprocessed one (latest-frame-wins)."""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar, cast

T = TypeVar("T")


class SlotClosedError(Exception):
    """The slot was closed and holds nothing more."""


class LatestSlot(Generic[T]):
    """Holds at most one item; ``put`` replaces a waiting item and counts it as dropped.

    So a slow consumer always gets the newest item and never a queue of stale ones: the
    wait between a frame's arrival and its processing is bounded by one processing time.
    Use from one event loop only (not thread-safe).
    """

    def __init__(self) -> None:
        self._item: T | None = None
        self._has_item = False
        self._dropped = 0
        self._closed = False
        self._event = asyncio.Event()

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, item: T) -> bool:
        """Store ``item``; returns True when it replaced one not yet taken (that one is dropped).

        Raises:
            SlotClosedError: after ``close()``.
        """
        if self._closed:
            raise SlotClosedError("the slot is closed")
        replaced = self._has_item
        if replaced:
            self._dropped += 1
        self._item, self._has_item = item, True
        self._event.set()
        return replaced

    async def ready(self) -> None:
        """Wait until an item is waiting (a closed slot may still hold its last one).

        Raises:
            SlotClosedError: the slot is closed and empty.
        """
        while not self._has_item:
            if self._closed:
                raise SlotClosedError("the slot is closed")
            self._event.clear()
            await self._event.wait()

    def take_nowait(self) -> tuple[T, int]:
        """The waiting item with the number of items dropped since the last take.

        Raises:
            SlotClosedError: no item is waiting.
        """
        if not self._has_item:
            raise SlotClosedError("the slot is empty")
        item, dropped = self._item, self._dropped
        self._item, self._has_item, self._dropped = None, False, 0
        return cast(T, item), dropped  # _has_item says it is a T, even when T admits None

    async def take(self) -> tuple[T, int]:
        """Wait for the newest item; returns it with the number of items dropped since the last take.

        A closed slot still hands out its last item, then raises.

        Raises:
            SlotClosedError: the slot is closed and empty.
        """
        await self.ready()
        return self.take_nowait()

    def close(self) -> None:
        """Refuse new items and wake a waiting ``take``; a waiting item may still be taken."""
        self._closed = True
        self._event.set()
