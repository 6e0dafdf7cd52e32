"""A stream's mailbox of frames waiting for analysis.

``LatestSlot`` (2D streams): one item, a new frame replaces the unprocessed one
(latest-frame-wins).  ``MomentSlot`` (the cameras of a 3D session): a few frames in arrival
order; when the stream is ready to analyse, its session chooses which one (the moment the other
cameras analyse too) and the older ones are dropped, so the cameras drop the same moments.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class SlotClosedError(Exception):
    """The slot was closed and holds nothing more."""


# Frames a camera of a 3D session keeps waiting; beyond it the oldest is dropped.
MOMENT_SLOT_LIMIT = 8


class MomentSlot(Generic[T]):
    """Holds up to ``limit`` items in arrival order; ``take_nowait`` takes the one ``choose`` picks.

    ``moment(item)`` is an item's capture time; ``choose(moments)`` gets the waiting items'
    capture times (arrival order) and returns the index of the one to analyse (for a camera of a
    3D session: the moment its session chose, ``FrameGrouper.choose``).  The items before it are
    dropped, the later ones wait.  An item captured before the one put just before (a clock going
    back) drops every waiting one, so it is taken next and its stream learns of its clock.  Each
    dropped item goes to ``on_drop``.  One event loop only (not thread-safe).
    """

    def __init__(
        self,
        moment: Callable[[T], float],
        choose: Callable[[Sequence[float]], int],
        on_drop: Callable[[T], None] | None = None,
        limit: int = MOMENT_SLOT_LIMIT,
    ) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self._moment, self._choose, self._on_drop, self._limit = moment, choose, on_drop, limit
        self._items: deque[T] = deque()
        self._dropped = 0
        self._closed = False
        self._event = asyncio.Event()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def waiting(self) -> int:
        return len(self._items)

    def put(self, item: T) -> bool:
        """Store ``item``; returns True when that dropped a waiting item.

        Raises:
            SlotClosedError: after ``close()``.
        """
        if self._closed:
            raise SlotClosedError("the slot is closed")
        if self._items and self._moment(item) < self._moment(self._items[-1]):
            gone = list(self._items)
            self._items.clear()
        else:
            gone = [self._items.popleft() for _ in range(len(self._items) + 1 - self._limit)]
        self._items.append(item)
        self._event.set()
        self._drop(gone)
        return bool(gone)

    def _drop(self, items: list[T]) -> None:
        self._dropped += len(items)
        if self._on_drop is not None:
            for item in items:
                self._on_drop(item)

    async def ready(self) -> None:
        """Wait until an item is waiting (a closed slot may still hold some).

        Raises:
            SlotClosedError: the slot is closed and empty.
        """
        while not self._items:
            if self._closed:
                raise SlotClosedError("the slot is closed")
            self._event.clear()
            await self._event.wait()

    def take_nowait(self) -> tuple[T, int]:
        """The chosen item with the number of items dropped since the last take (this one's
        older items included).

        Raises:
            SlotClosedError: no item is waiting.
            IndexError: ``choose`` returned an index out of range.
        """
        if not self._items:
            raise SlotClosedError("the slot is empty")
        index = self._choose([self._moment(item) for item in self._items])
        if not 0 <= index < len(self._items):
            raise IndexError(f"choose returned {index} for {len(self._items)} waiting items")
        older = [self._items.popleft() for _ in range(index)]
        item = self._items.popleft()
        self._drop(older)
        dropped, self._dropped = self._dropped, 0
        return item, dropped

    async def take(self) -> tuple[T, int]:
        """Wait for an item; returns the chosen one with the number dropped since the last take.

        Raises:
            SlotClosedError: the slot is closed and empty.
        """
        await self.ready()
        return self.take_nowait()

    def close(self) -> None:
        """Refuse new items and wake a waiting ``take``; waiting items may still be taken."""
        self._closed = True
        self._event.set()


def _no_moment(_item: object) -> float:
    return 0.0


def _the_only(_moments: Sequence[float]) -> int:
    return 0


class LatestSlot(MomentSlot[T]):
    """Holds at most one item; ``put`` replaces a waiting item and counts it as dropped.

    So a slow consumer always gets the newest item and never a queue of stale ones: the
    wait between a frame's arrival and its processing is bounded by one processing time.
    A ``MomentSlot`` of one item: there is nothing to choose.  One event loop only.
    """

    def __init__(self, on_drop: Callable[[T], None] | None = None) -> None:
        """``on_drop`` is called with each item replaced unprocessed."""
        super().__init__(_no_moment, _the_only, on_drop, limit=1)
