"""Dynamic batching: frames from several streams that arrive within a short window share one detect()."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from pose_analyzer.detection.base import Detector
from pose_analyzer.types import Detections, Frame

BatchObserver = Callable[[int, float], None]


@dataclass(slots=True)
class _Request:
    frame: Frame
    future: asyncio.Future[Detections]


class DetectionBatcher:
    """Collects frames for one shared (batched) detector and runs them as batches in one worker thread.

    The first waiting frame opens a window of ``window_s``; the batch goes to the model when
    the window ends or ``max_batch`` frames are waiting.  Because every stream holds at most
    one frame in flight (latest-frame-wins), a batch never has two frames of one stream.
    The detector runs in a dedicated thread (the model is not thread-safe, and the event
    loop must stay free).  ``observe(batch_size, seconds)`` is called after each batch.

    If a batch fails, each of its frames is retried alone, so one bad frame fails only the
    stream that sent it.
    """

    def __init__(
        self,
        detector: Detector,
        window_s: float = 0.005,
        max_batch: int = 8,
        observe: BatchObserver | None = None,
    ) -> None:
        if window_s < 0:
            raise ValueError(f"window_s must be >= 0, got {window_s}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.detector = detector
        self.window_s = window_s
        self.max_batch = max_batch
        self._observe = observe
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"detect-{detector.name}")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the batching loop on the running event loop (idempotent)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="detection-batcher")

    async def detect(self, frame: Frame) -> Detections:
        """Detections of ``frame``, computed in some batch.

        Raises:
            RuntimeError: the batcher was not started or is closed.
            Exception: whatever the detector raised for this frame.
        """
        if self._task is None or self._task.done():
            raise RuntimeError("the detection batcher is not running")
        future: asyncio.Future[Detections] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Request(frame, future))
        return await future

    async def _collect(self) -> list[_Request]:
        batch = [await self._queue.get()]
        deadline = time.monotonic() + self.window_s
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                # Take what is already waiting without waiting longer.
                while len(batch) < self.max_batch and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [r for r in await self._collect() if not r.future.cancelled()]
            if not batch:
                continue
            start = time.perf_counter()
            try:
                results = await loop.run_in_executor(
                    self._executor, self.detector.detect, [r.frame for r in batch]
                )
            except Exception as exc:
                if len(batch) == 1:
                    _settle(batch[0], exc)
                    continue
                await self._retry_alone(batch)
                continue
            if self._observe is not None:
                self._observe(len(batch), time.perf_counter() - start)
            for request, detections in zip(batch, results, strict=True):
                _settle(request, detections)

    async def _retry_alone(self, batch: list[_Request]) -> None:
        loop = asyncio.get_running_loop()
        for request in batch:
            start = time.perf_counter()
            try:
                (detections,) = await loop.run_in_executor(
                    self._executor, self.detector.detect, [request.frame]
                )
            except Exception as exc:
                _settle(request, exc)
                continue
            if self._observe is not None:
                self._observe(1, time.perf_counter() - start)
            _settle(request, detections)

    async def close(self) -> None:
        """Stop the loop, fail waiting frames, and release the worker thread (the detector stays open)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while not self._queue.empty():
            _settle(self._queue.get_nowait(), RuntimeError("the detection batcher was closed"))
        # The worker may still be inside detect(); wait for it without blocking the event loop.
        await asyncio.to_thread(self._executor.shutdown, True)


def _settle(request: _Request, outcome: Detections | Exception) -> None:
    if request.future.done():  # the stream gave up waiting (it was closed)
        return
    if isinstance(outcome, Exception):
        request.future.set_exception(outcome)
    else:
        request.future.set_result(outcome)
