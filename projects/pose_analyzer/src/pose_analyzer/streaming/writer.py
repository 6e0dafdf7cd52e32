"""A stream's database writes, off its frame loop: a writer task with a bounded queue.

The frame loop hands each analysed frame to ``RecordingWriter.add`` and goes on; the writer task
moves what is queued to its pending list and, at least every ``flush_interval_s`` (what a crash
can lose) and whenever an item asked for it, applies the pending frames to the stream's recorder
and commits them in ONE worker-thread hop (no thread hop per frame).  A caller that must know an
item is stored (a rep committed before it is announced) awaits the future that
``add(..., commit=True)`` returns: it resolves once that item is committed, or raises the
``StorageError`` that commit failed with, so the failure can be reported to the stream.

When the queue is full, ``add`` waits: the database's back-pressure reaches the frame loop only
when the database falls ``capacity`` frames behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from dataclasses import dataclass

from pose_analyzer.storage import Database, StorageError
from pose_analyzer.streaming.recording import StreamRecording
from pose_analyzer.types import FrameAnalysis

log = logging.getLogger(__name__)

DEFAULT_CAPACITY = 64


@dataclass(slots=True)
class _Item:
    analysis: FrameAnalysis
    committed: asyncio.Future[None] | None


class RecordingWriter:
    """Writes one stream's recording from a task of its own (see the module doc)."""

    def __init__(
        self,
        recording: StreamRecording,
        database: Database,
        flush_interval_s: float = 10.0,
        capacity: int = DEFAULT_CAPACITY,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.recording = recording
        self.database = database
        self.flush_interval_s = flush_interval_s
        self.commits = 0
        self.failed_commits = 0
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue(capacity)  # None: stop
        self._last_commit = time.monotonic()
        self._pending: list[_Item] = []
        # The recorder is not thread-safe: the writer's hop and a blocking finish take turns.
        self._lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="recording-writer")

    async def add(self, analysis: FrameAnalysis, commit: bool = False) -> asyncio.Future[None] | None:
        """Queue one analysed frame (waits while the queue is full).

        Returns:
            With ``commit``, a future that resolves once the frame is committed (or raises the
            ``StorageError`` of that commit); else None.
        """
        committed = asyncio.get_running_loop().create_future() if commit else None
        await self._queue.put(_Item(analysis, committed))
        return committed

    def _apply(self, items: list[_Item], commit: bool) -> StorageError | None:
        """The writer's hop: add the frames to the recorder, then commit when asked."""
        with self._lock:
            recorder = self.recording.recorder
            for item in items:
                try:
                    recorder.add_frame(item.analysis)
                except (ValueError, StorageError) as exc:  # one bad frame must not stop the writer
                    log.error("could not record a frame", extra={"error": str(exc)})
            if not commit:
                return None
            try:
                recorder.flush()
            except StorageError as exc:
                return exc
            return None

    async def _run(self) -> None:
        while True:
            items = [await self._queue.get()]
            while not self._queue.empty():
                items.append(self._queue.get_nowait())
            stop = None in items
            await self._write([i for i in items if i is not None])
            if stop:
                return

    async def _write(self, items: list[_Item]) -> None:
        self._pending.extend(items)
        waiting = [i.committed for i in self._pending if i.committed is not None]
        if not waiting and time.monotonic() - self._last_commit < self.flush_interval_s:
            return
        pending, self._pending = self._pending, []
        error = await asyncio.to_thread(self._apply, pending, True)
        self._settle_commit(waiting, error)

    def _settle_commit(self, waiting: list[asyncio.Future[None]], error: StorageError | None) -> None:
        self._last_commit = time.monotonic()
        if error is None:
            self.commits += 1
        else:
            self.failed_commits += 1
            log.error("could not commit a stream's recording", extra={"error": str(error)})
        for future in waiting:
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    async def close(self, status: str, reason: str | None) -> None:
        """Write what is queued, then commit the stream's end with ``status``.

        When cancelled meanwhile, finishes at once, blocking (see ``close_now``).
        """
        try:
            await self._stop_task()
            items = self._drain()
            await asyncio.to_thread(self._finish, items, status, reason)
        except asyncio.CancelledError:
            self.close_now(status, reason)
            raise

    def close_now(self, status: str, reason: str | None) -> None:
        """``close``, blocking: for a stream being torn down."""
        if self._task is not None:
            self._task.cancel()
        self._finish(self._drain(), status, reason)

    async def _stop_task(self) -> None:
        """Let the task write everything queued before the stop mark, then end."""
        if self._task is not None and not self._task.done():
            await self._queue.put(None)
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _drain(self) -> list[_Item]:
        items, self._pending = self._pending, []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None:
                items.append(item)
        return items

    def _finish(self, items: list[_Item], status: str, reason: str | None) -> None:
        with self._lock:
            if not self.recording.recorder.closed:
                for item in items:
                    self.recording.recorder.add_frame(item.analysis)
            self.recording.finish(self.database, status, reason)
        for item in items:  # committed with the end (or logged by finish when it failed)
            if item.committed is not None and not item.committed.done():
                item.committed.get_loop().call_soon_threadsafe(_resolve, item.committed)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
