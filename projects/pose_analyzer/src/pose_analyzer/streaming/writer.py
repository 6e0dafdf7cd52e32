"""A stream's database writes, off its frame loop: a writer task with a bounded queue.

The frame loop hands each analysed frame to ``RecordingWriter.add`` and goes on; the writer task
moves what is queued to its pending list and, every ``flush_interval_s`` (what a crash can lose),
applies the pending frames to the stream's recorder and commits everything in ONE worker-thread
hop (no hop per frame, none between adding and committing).  A caller that must know an item is
stored (a rep committed before it is announced) awaits the future that ``add(..., commit=True)``
returns: the writer then commits at once, but only the reps (``StreamRecorder.commit_reps``: the
fewest statements, as each is a round trip that a busy machine makes slow), and the future
resolves once that is done, or raises the ``StorageError`` that commit failed with, so the failure
can be reported to the stream.

A failed commit is tried again with capped exponential backoff (``RetryPolicy``); only when every
attempt failed is the ``StorageError`` reported (to the futures waiting, or raised by ``close``).
The recorder keeps what it buffered across a failed commit, so a later attempt writes it all.

When the queue is full, ``add`` waits: the database's back-pressure reaches the frame loop only
when the database falls ``capacity`` frames behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pose_analyzer.storage import Database, StorageError
from pose_analyzer.streaming.recording import StreamRecording
from pose_analyzer.types import FrameAnalysis

log = logging.getLogger(__name__)

DEFAULT_CAPACITY = 64


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often a failed commit is tried again: ``attempts`` in all, waiting ``backoff_s`` after
    the first failure, doubling up to ``max_backoff_s``."""

    attempts: int = 4
    backoff_s: float = 0.2
    max_backoff_s: float = 2.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.backoff_s < 0 or self.max_backoff_s < self.backoff_s:
            raise ValueError(f"invalid retry policy {self!r}")

    def delay(self, failures: int) -> float:
        """The wait after the ``failures``-th failed attempt (1-based)."""
        return float(min(self.max_backoff_s, self.backoff_s * 2 ** (failures - 1)))


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
        retry: RetryPolicy | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.recording = recording
        self.database = database
        self.flush_interval_s = flush_interval_s
        self.retry = retry or RetryPolicy()
        self.commits = 0
        self.failed_commits = 0
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue(capacity)  # None: stop
        self._last_flush = time.monotonic()
        self._pending: list[_Item] = []
        # The recorder is not thread-safe: the writer's hop and a blocking finish take turns.
        self._lock = threading.RLock()
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

    def _add(self, items: list[_Item]) -> None:
        """Add the frames to the recorder (a worker-thread hop; a bad frame is logged and skipped)."""
        with self._lock:  # re-entrant: ``_add_and_commit`` holds it already
            recorder = self.recording.recorder
            if recorder.closed:
                return
            for item in items:
                try:
                    recorder.add_frame(item.analysis)
                except (ValueError, StorageError) as exc:  # one bad frame must not stop the writer
                    log.error("could not record a frame", extra={"error": str(exc)})

    def _add_and_commit(self, items: list[_Item], everything: bool) -> None:
        """Add ``items`` to the recorder, then commit its reps (``everything``: all it buffered):
        one worker-thread hop per commit.

        ``items`` is emptied once added, so a retry after a failed commit only commits again
        (the recorder kept what it buffered).
        """
        with self._lock:
            self._add(items)
            items.clear()
            if everything:
                self.recording.recorder.flush()
            else:
                self.recording.recorder.commit_reps()

    def _end(self, status: str, reason: str | None) -> None:
        with self._lock:
            self.recording.finish(self.database, status, reason)

    async def _with_retries(self, attempt: Callable[[], None], what: str) -> None:
        """Run ``attempt`` in a worker thread until it succeeds or the policy's attempts are spent.

        Raises:
            StorageError: the last attempt's failure.
        """
        failures = 0
        while True:
            try:
                await asyncio.to_thread(attempt)
            except StorageError as exc:
                failures += 1
                self.failed_commits += 1
                if failures >= self.retry.attempts:
                    log.error(
                        "commit failed; giving up",
                        extra={"what": what, "error": str(exc), "attempts": failures},
                    )
                    raise
                log.warning(
                    "commit failed; trying again",
                    extra={"what": what, "error": str(exc), "attempt": failures},
                )
                await asyncio.sleep(self.retry.delay(failures))  # backoff before the next attempt
            else:
                return

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
        """Commit the reps someone waits for at once, in a transaction of their own; everything
        else once the flush interval has passed (so a rep never waits behind a periodic flush)."""
        self._pending.extend(items)
        waiting = [i.committed for i in self._pending if i.committed is not None]
        due = time.monotonic() - self._last_flush >= self.flush_interval_s
        if not waiting and not due:
            return
        pending, self._pending = self._pending, []
        if waiting:
            await self._commit(pending, waiting, everything=False)
        if due:
            await self._commit(pending, [], everything=True)

    async def _commit(
        self, items: list[_Item], waiting: list[asyncio.Future[None]], everything: bool
    ) -> None:
        error: StorageError | None = None
        what = "commit a stream" if everything else "commit a stream's reps"
        try:
            await self._with_retries(lambda: self._add_and_commit(items, everything), what)
        except StorageError as exc:
            error = exc
        if everything:
            self._last_flush = time.monotonic()  # also after a failure: the next try waits its turn
        self._settle_commit(waiting, error)

    def _settle_commit(self, waiting: list[asyncio.Future[None]], error: StorageError | None) -> None:
        if error is None:
            self.commits += 1
        for future in waiting:
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    async def close(self, status: str, reason: str | None) -> None:
        """Write what is queued, then commit the stream's end with ``status`` (retried by the policy).

        May be called again after it raised, e.g. to record the stream as "failed" instead.
        When cancelled meanwhile, finishes at once, blocking (see ``close_now``).

        Raises:
            StorageError: the end could not be committed after every attempt.
        """
        try:
            await self._stop_task()
            items = self._drain()
            await asyncio.to_thread(self._add, items)
            waiting = [i.committed for i in items if i.committed is not None]
            try:
                await self._with_retries(lambda: self._end(status, reason), "commit a stream's end")
            except StorageError as exc:
                self._settle_commit(waiting, exc)
                raise
            self._settle_commit(waiting, None)
        except asyncio.CancelledError:
            self.close_now(status, reason)
            raise

    def close_now(self, status: str, reason: str | None) -> None:
        """``close``, blocking and tried once: for a stream being torn down.  Never raises: logs."""
        if self._task is not None:
            self._task.cancel()
        items = self._drain()
        error: StorageError | None = None
        try:
            self._add(items)
            self._end(status, reason)
        except StorageError as exc:
            error = exc
            log.error("could not commit a stream's end", extra={"error": str(exc), "status": status})
        self._settle_commit([i.committed for i in items if i.committed is not None], error)

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
