"""A detection path per kind of backend, behind one small interface, chosen by the registry.

A stream asks its backend's ``DetectionPath`` for a ``StreamDetector`` and hands it one
``FrameJob`` per frame; either way a frame takes ONE hop into a worker thread, where it is
decoded, detected and analysed:

- ``PerStreamPath`` (backends that do not batch, e.g. MediaPipe, whose instance is stateful):
  each stream gets its own set-up detector; a shared semaphore (``compute``) bounds how many
  frames are in analysis at once across streams, and a stream takes its newest frame only
  once it holds a slot.
- ``SharedBatchPath`` (backends that batch, e.g. YOLO): one model for every stream (or a few
  replicas of it, each in its own thread); frames of several streams that arrive together go to
  it as one batch (``DetectionBatcher``), and a stream takes its newest frame only when its
  batch goes to a replica.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

import numpy as np

from pose_analyzer.detection.base import Detector
from pose_analyzer.detection.batcher import BatchObserver, DetectionBatcher, FrameJob, run_job
from pose_analyzer.detection.options import DetectorOptions
from pose_analyzer.detection.registry import backend_spec, build_detector
from pose_analyzer.tracking import Tracker
from pose_analyzer.types import Frame

T = TypeVar("T")
InferenceObserver = Callable[[float], None]


def setup_and_warm(detector: Detector) -> None:
    """Load the model and run one blank frame through it, so the first real frame is not slow."""
    detector.setup()
    detector.detect([Frame(image=np.zeros((480, 640, 3), np.uint8), timestamp=0.0)])


class StreamDetector(Protocol):
    """One stream's handle on its backend."""

    backend: str

    async def run(self, take: Callable[[], FrameJob[T]]) -> T:
        """Run the job ``take()`` returns (called once there is room for it) and return its result."""

    async def release(self) -> None:
        """Give back what the stream holds (waits for a frame still in the worker)."""

    def release_now(self) -> None:
        """``release``, blocking: for a stream being cancelled."""


class DetectionPath(Protocol):
    """How one backend's frames get detected, for every stream that uses it."""

    backend: str
    batches: bool

    def tracker(self) -> Tracker:
        """A new tracker suited to this backend's detections (one per stream)."""

    async def open_stream(self) -> StreamDetector:
        """A set-up detector handle for a new stream.  Raises whatever setting the model up raised."""

    async def warm(self) -> None:
        """Load the model and run a frame through it.  Raises whatever that raised."""

    async def close(self) -> None:
        """Release what the path holds (streams release their own handles first)."""


class _OwnDetector:
    """A per-stream detector: the job runs in a worker thread of the path once a compute slot is free."""

    def __init__(
        self,
        backend: str,
        detector: Detector,
        compute: asyncio.Semaphore,
        observe: InferenceObserver,
        workers: ThreadPoolExecutor,
    ) -> None:
        self.backend = backend
        self._detector = detector
        self._compute = compute
        self._observe = observe
        self._workers = workers
        # A cancelled stream may close its detector while a worker thread is still inside
        # detect(); the lock makes close wait for it.
        self._in_use = threading.Lock()

    def _run_now(self, job: FrameJob[T]) -> T:
        with self._in_use:
            return run_job(self._detector, job, self._observe)

    async def run(self, take: Callable[[], FrameJob[T]]) -> T:
        async with self._compute:
            job = take()
            return await asyncio.get_running_loop().run_in_executor(self._workers, self._run_now, job)

    def release_now(self) -> None:
        with self._in_use:
            self._detector.close()

    async def release(self) -> None:
        await asyncio.to_thread(self.release_now)


class PerStreamPath:
    """One detector instance per stream (see the module doc).

    The frames run in the path's own worker threads (``workers`` of them, as many as frames may
    be in analysis at once), not in the event loop's default pool: that pool also runs the
    database writers' commits, and a frame queued behind a burst of commits (every stream
    flushing at once, each waiting for the database's lock) was answered hundreds of ms late.
    """

    batches = False

    def __init__(
        self,
        backend: str,
        options: DetectorOptions,
        compute: asyncio.Semaphore,
        observe: InferenceObserver,
        workers: int | None = None,
    ) -> None:
        self.backend = backend
        self._options = options
        self._compute = compute
        self._observe = observe
        count = workers if workers is not None else (os.cpu_count() or 1) + 1
        if count < 1:
            raise ValueError(f"workers must be >= 1, got {count}")
        # Threads start on first use; ``close`` ends them.
        self._workers = ThreadPoolExecutor(max_workers=count, thread_name_prefix=f"detect-{backend}")

    def tracker(self) -> Tracker:
        return backend_spec(self.backend).tracker()

    def own(self, detector: Detector) -> StreamDetector:
        """A stream's handle on ``detector`` (set up), bounded by the path's compute slots."""
        return _OwnDetector(self.backend, detector, self._compute, self._observe, self._workers)

    async def open_stream(self) -> StreamDetector:
        detector = build_detector(self.backend, self._options)
        await asyncio.to_thread(setup_and_warm, detector)
        return self.own(detector)

    async def warm(self) -> None:
        handle = await self.open_stream()
        await handle.release()

    async def close(self) -> None:
        """End the worker threads (streams have released their detectors first)."""
        await asyncio.to_thread(self._workers.shutdown, True)


class _SharedDetector:
    """A stream's handle on the shared batcher: nothing of its own to release."""

    def __init__(self, backend: str, batcher: DetectionBatcher) -> None:
        self.backend = backend
        self._batcher = batcher

    async def run(self, take: Callable[[], FrameJob[T]]) -> T:
        return await self._batcher.run(take)

    async def release(self) -> None:
        return None

    def release_now(self) -> None:
        return None


class SharedBatchPath:
    """One model shared by all streams, fed in cross-stream batches (see the module doc)."""

    batches = True

    def __init__(
        self,
        backend: str,
        options: DetectorOptions,
        window_s: float,
        max_batch: int,
        observe: BatchObserver,
        replicas: int = 1,
    ) -> None:
        if replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {replicas}")
        self.backend = backend
        self._options = options
        self._window_s = window_s
        self._max_batch = max_batch
        self._observe = observe
        self._replicas = replicas
        self._detectors: list[Detector] = []
        self._batcher: DetectionBatcher | None = None
        self._lock = asyncio.Lock()

    def tracker(self) -> Tracker:
        return backend_spec(self.backend).tracker()

    async def _shared(self) -> DetectionBatcher:
        async with self._lock:  # two streams starting at once set the model up once
            if self._batcher is None:
                while len(self._detectors) < self._replicas:
                    detector = build_detector(self.backend, self._options)
                    await asyncio.to_thread(setup_and_warm, detector)
                    self._detectors.append(detector)
                first, *more = self._detectors
                self._batcher = DetectionBatcher(
                    first, self._window_s, self._max_batch, self._observe, replicas=more
                )
                self._batcher.start()
            return self._batcher

    async def open_stream(self) -> StreamDetector:
        return _SharedDetector(self.backend, await self._shared())

    async def warm(self) -> None:
        await self._shared()

    async def close(self) -> None:
        if self._batcher is not None:
            await self._batcher.close()
            self._batcher = None
        detectors, self._detectors = self._detectors, []
        for detector in detectors:
            await asyncio.to_thread(detector.close)


def open_path(
    backend: str,
    options: DetectorOptions,
    *,
    compute: asyncio.Semaphore,
    batch_window_s: float,
    max_batch: int,
    observe_inference: InferenceObserver,
    observe_batch: BatchObserver,
    batch_replicas: int = 1,
    compute_slots: int | None = None,
) -> DetectionPath:
    """The detection path of ``backend``, as its spec says (per stream, or shared and batched).

    Raises:
        UnknownBackendError: an unknown name.
    """
    spec = backend_spec(backend)
    if spec.batches:
        return SharedBatchPath(spec.name, options, batch_window_s, max_batch, observe_batch, batch_replicas)
    return PerStreamPath(spec.name, options, compute, observe_inference, workers=compute_slots)
