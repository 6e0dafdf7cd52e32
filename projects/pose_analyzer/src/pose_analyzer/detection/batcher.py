"""Cross-stream batching: frames of several streams that arrive within a short window share one detect().

Each frame comes as a ``FrameJob``; a whole batch is one hop into the batcher's worker thread,
which decodes every job's frame, runs the detector once on all of them and finishes (analyses)
each job, so a batched frame crosses threads as often as a per-stream one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from pose_analyzer.detection.base import Detector
from pose_analyzer.types import Detections, Frame

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
BatchObserver = Callable[[int, float], None]


class FrameJob(Protocol[T_co]):
    """One frame's work in a worker thread: make the frame, then turn its detections into a result."""

    def decode(self) -> Frame:
        """The frame to detect (decoding happens here, in the worker)."""

    def finish(self, frame: Frame, detections: Detections) -> T_co:
        """The result of the frame from its detections."""


def run_job(detector: Detector, job: FrameJob[T], observe: Callable[[float], None] | None = None) -> T:
    """Decode, detect and finish one job in the calling thread; ``observe(seconds)`` times detect."""
    frame = job.decode()
    start = time.perf_counter()
    detections = detector.detect([frame])[0]
    if observe is not None:
        observe(time.perf_counter() - start)
    return job.finish(frame, detections)


@dataclass(slots=True)
class _Request:
    take: Callable[[], FrameJob[Any]]
    future: asyncio.Future[Any]
    job: FrameJob[Any] | None = None  # ``take()``'s, once the request's batch goes to a replica


class DetectionBatcher:
    """Collects jobs for a shared (batched) model and runs them as batches in worker threads.

    The first waiting job opens a window of ``window_s``; the batch goes to the free replicas
    (shared evenly among them) when the window ends or ``max_batch`` jobs are waiting.  Every
    stream holds at most one frame in flight (latest-frame-wins), so a batch never has two
    frames of one stream.  Each replica
    (one set-up instance of the model) runs in a dedicated thread (a model is not thread-safe,
    and the event loop must stay free); with more than one, a batch is decoded, detected and
    analysed while another is (on CPU, where batching gains nothing, this keeps every core
    busy).  ``observe(batch_size, seconds)`` is called after each detector call.

    A job whose frame cannot be decoded, or whose finish raises, fails alone; if the detector
    fails on a batch, each frame is retried alone, so one bad frame fails only its stream.
    """

    def __init__(
        self,
        detector: Detector,
        window_s: float = 0.005,
        max_batch: int = 8,
        observe: BatchObserver | None = None,
        replicas: list[Detector] | None = None,
    ) -> None:
        if window_s < 0:
            raise ValueError(f"window_s must be >= 0, got {window_s}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.detector = detector
        self.detectors = [detector, *(replicas or [])]
        self.window_s = window_s
        self.max_batch = max_batch
        self._observe = observe
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._executors = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"detect-{detector.name}-{i}")
            for i in range(len(self.detectors))
        ]
        self._task: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        """Jobs waiting for the next batch."""
        return self._queue.qsize()

    def start(self) -> None:
        """Start the batching loop on the running event loop (idempotent)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="detection-batcher")

    async def submit(self, job: FrameJob[T]) -> T:
        """The result of ``job``, computed in some batch.

        Raises:
            RuntimeError: the batcher was not started or is closed.
            Exception: whatever decoding, the detector or finishing raised for this job.
        """
        return await self.run(lambda: job)

    async def run(self, take: Callable[[], FrameJob[T]]) -> T:
        """The result of the job ``take()`` returns, computed in some batch.

        ``take`` is called (in the event loop) only when the request's batch goes to a replica,
        so a stream hands over its newest frame then, not the one it had when it queued: frames
        that arrive while every replica is busy replace each other (latest-frame-wins) instead
        of waiting in line, and their wait is bounded by the batches ahead, not by the queue.

        Raises:
            RuntimeError: the batcher was not started or is closed.
            Exception: whatever ``take``, decoding, the detector or finishing raised for this job.
        """
        if self._task is None or self._task.done():
            raise RuntimeError("the detection batcher is not running")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Request(take, future))
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
        free: asyncio.Queue[int] = asyncio.Queue()
        for replica in range(len(self.detectors)):
            free.put_nowait(replica)
        loop = asyncio.get_running_loop()
        while True:
            # A free replica first: meanwhile the next batch keeps filling.
            replica = await free.get()
            batch = _taken(await self._collect())
            # The batch is shared among every replica free now, so they run side by side: with
            # latest-frame-wins the streams answered together send their next frames together,
            # and one replica taking them all would leave the others idle (on CPU, where a batch
            # costs as much per frame as single frames, that lost about a quarter of the fps).
            replicas = [replica]
            while not free.empty() and len(replicas) < len(batch):
                replicas.append(free.get_nowait())
            share = -(-len(batch) // len(replicas)) if batch else 0
            for i, chosen in enumerate(replicas):
                part = batch[i * share : (i + 1) * share]
                if not part:
                    free.put_nowait(chosen)
                    continue
                task = loop.create_task(self._dispatch(chosen, part, free))
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)

    async def _dispatch(self, replica: int, batch: list[_Request], free: asyncio.Queue[int]) -> None:
        loop = asyncio.get_running_loop()
        try:
            outcomes = await loop.run_in_executor(
                self._executors[replica], self._process, replica, [_job(r) for r in batch]
            )
        except asyncio.CancelledError:
            for request in batch:
                _settle(request, RuntimeError("the detection batcher was closed"))
            raise
        finally:
            free.put_nowait(replica)
        for request, outcome in zip(batch, outcomes, strict=True):
            _settle(request, outcome)

    def _detect(self, replica: int, frames: list[Frame]) -> list[Detections]:
        start = time.perf_counter()
        detections = self.detectors[replica].detect(frames)
        if self._observe is not None:
            self._observe(len(frames), time.perf_counter() - start)
        return detections

    def _process(self, replica: int, jobs: list[FrameJob[Any]]) -> list[Any]:
        """The worker's hop: decode all, detect once (or alone after a failure), finish each."""
        outcomes: list[Any] = [None] * len(jobs)
        frames: dict[int, Frame] = {}
        for i, job in enumerate(jobs):
            try:
                frames[i] = job.decode()
            except Exception as exc:
                outcomes[i] = exc
        detections: dict[int, Detections | Exception] = {}
        try:
            detections = dict(zip(frames, self._detect(replica, list(frames.values())), strict=True))
        except Exception as exc:
            if len(frames) == 1:
                detections = dict.fromkeys(frames, exc)
            else:
                for i, one in frames.items():
                    try:
                        detections[i] = self._detect(replica, [one])[0]
                    except Exception as alone:
                        detections[i] = alone
        for i, found in detections.items():
            if isinstance(found, Exception):
                outcomes[i] = found
                continue
            try:
                outcomes[i] = jobs[i].finish(frames[i], found)
            except Exception as exc:
                outcomes[i] = exc
        return outcomes

    async def close(self) -> None:
        """Stop the loop, fail waiting jobs, and release the worker threads (the detectors stay open)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._in_flight):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while not self._queue.empty():
            _settle(self._queue.get_nowait(), RuntimeError("the detection batcher was closed"))
        # A worker may still be inside detect(); wait for it without blocking the event loop.
        for executor in self._executors:
            await asyncio.to_thread(executor.shutdown, True)


def _taken(batch: list[_Request]) -> list[_Request]:
    """The requests still wanted, each with its job taken now (a failed ``take`` fails alone)."""
    taken: list[_Request] = []
    for request in batch:
        if request.future.cancelled():
            continue
        try:
            request.job = request.take()
        except Exception as exc:
            _settle(request, exc)
            continue
        taken.append(request)
    return taken


def _job(request: _Request) -> FrameJob[Any]:
    assert request.job is not None  # set by ``_taken`` before dispatch
    return request.job


def _settle(request: _Request, outcome: Any) -> None:
    if request.future.done():  # the stream gave up waiting (it was closed)
        return
    if isinstance(outcome, Exception):
        request.future.set_exception(outcome)
    else:
        request.future.set_result(outcome)
