"""The registry of open streams and the detectors they use: one shared batched YOLO, MediaPipe per stream."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from pose_analyzer.detection.base import Detector
from pose_analyzer.detection.registry import create_detector
from pose_analyzer.metrics import StreamMetrics
from pose_analyzer.settings import PoseSettings
from pose_analyzer.storage import Database
from pose_analyzer.streaming.batcher import DetectionBatcher
from pose_analyzer.streaming.errors import ServerFailureError, StreamPolicyError
from pose_analyzer.types import Detections, Frame

log = logging.getLogger(__name__)

STREAM_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")

DetectFn = Callable[[Frame], Awaitable[Detections]]


@dataclass(slots=True)
class StreamDetection:
    """How one stream gets its frames detected, and what to release when it ends.

    ``detect_now`` (per-stream detectors only) detects in the calling thread, so a worker
    thread can decode, detect and analyse a frame in one hop, and ``compute`` bounds how many
    streams do that at once.  Both are None for the shared batcher: its ``detect`` is awaited on
    the event loop, and bounding the streams would bound its batches.
    """

    backend: str
    detector: Detector
    detect: DetectFn
    release: Callable[[], Awaitable[None]]
    release_now: Callable[[], None]
    detect_now: Callable[[Frame], Detections] | None = None
    compute: asyncio.Semaphore | None = None


def _setup_and_warm(detector: Detector) -> None:
    """Load the model and run one blank frame through it, so the first real frame is not slow."""
    detector.setup()
    detector.detect([Frame(image=np.zeros((480, 640, 3), np.uint8), timestamp=0.0)])


async def _nothing() -> None:
    return None


def _nothing_now() -> None:
    return None


class StreamHub:
    """Admits streams (id, limit), hands each one its detection path, and owns the shared detector.

    ``default_backend`` is the concrete backend chosen at start-up ("auto" already resolved);
    ``device`` is "cpu" or "cuda" for YOLO; ``database`` (None: nothing recorded) receives
    what streams produced.  Use from one event loop.
    """

    def __init__(
        self,
        settings: PoseSettings,
        metrics: StreamMetrics,
        default_backend: str,
        device: str = "cpu",
        database: Database | None = None,
    ) -> None:
        self.settings = settings
        self.database = database
        self.metrics = metrics
        self.default_backend = default_backend
        self.device = device
        self._streams: set[str] = set()
        self._batcher: DetectionBatcher | None = None
        self._shared: Detector | None = None
        self._shared_lock = asyncio.Lock()
        self.compute_slots = settings.stream_compute_slots or (os.cpu_count() or 1) + 1
        # Bounds the frames of per-stream detectors in analysis at once (see the setting).
        self.compute = asyncio.Semaphore(self.compute_slots)

    @property
    def active(self) -> int:
        return len(self._streams)

    def register(self, stream_id: str) -> None:
        """Admit ``stream_id``.

        Raises:
            StreamPolicyError: an invalid id, one already streaming, or ``max_streams`` reached.
        """
        if not STREAM_ID.match(stream_id):
            raise StreamPolicyError(
                "stream id must be 1-64 characters of letters, digits, '_', '-', '.', ':'",
                "invalid_stream_id",
            )
        if stream_id in self._streams:
            raise StreamPolicyError(f"stream {stream_id!r} is already streaming", "stream_busy")
        if len(self._streams) >= self.settings.max_streams:
            raise StreamPolicyError(
                f"too many streams: the limit is {self.settings.max_streams}", "too_many_streams"
            )
        self._streams.add(stream_id)
        self.metrics.active_streams.set(len(self._streams))

    def unregister(self, stream_id: str) -> None:
        self._streams.discard(stream_id)
        self.metrics.active_streams.set(len(self._streams))

    def _detector_options(self, backend: str) -> dict[str, Any]:
        if backend == "mediapipe":
            return {}
        return {
            "weights": self.settings.yolo_weights,
            "device": self.device,
            "models_dir": self.settings.models_dir,
            "cache_dir": self.settings.cache_dir / "onnx",
        }

    async def _setup(self, backend: str) -> Detector:
        detector = create_detector(backend, **self._detector_options(backend))
        try:
            await asyncio.to_thread(_setup_and_warm, detector)
        except Exception as exc:
            log.exception("a pose backend could not start", extra={"backend": backend})
            raise ServerFailureError(f"the {backend} backend could not start", "backend_failed") from exc
        return detector

    async def detection(self, backend: str | None = None) -> StreamDetection:
        """The detection path of a new stream (``backend`` None: the service default).

        MediaPipe is stateful per stream, so each stream gets its own instance, run in a
        worker thread.  YOLO is shared: all streams' frames go through one batcher.

        Raises:
            ServerFailureError: the backend could not be set up.
        """
        name = backend or self.default_backend
        if name == "mediapipe":
            detector = await self._setup(name)
            inference = self.metrics.inference_seconds.labels(name)
            # A cancelled stream may close its detector while a worker thread is still inside
            # detect(); the lock makes close wait for it.
            in_use = threading.Lock()

            def detect_one(frame: Frame) -> Detections:
                with in_use:
                    detections = detector.detect([frame])[0]
                inference.observe(detections.inference_ms / 1000.0)
                return detections

            def release_now() -> None:
                with in_use:
                    detector.close()

            async def detect(frame: Frame) -> Detections:
                return await asyncio.to_thread(detect_one, frame)

            async def release() -> None:
                await asyncio.to_thread(release_now)

            return StreamDetection(name, detector, detect, release, release_now, detect_one, self.compute)
        batcher = await self._shared_batcher(name)
        return StreamDetection(name, batcher.detector, batcher.detect, _nothing, _nothing_now)

    async def _shared_batcher(self, backend: str) -> DetectionBatcher:
        async with self._shared_lock:  # two streams starting at once set up the model once
            if self._batcher is None:
                self._shared = await self._setup(backend)
                inference = self.metrics.inference_seconds.labels(backend)

                def observe(size: int, seconds: float) -> None:
                    self.metrics.batch_size.observe(size)
                    inference.observe(seconds)

                self._batcher = DetectionBatcher(
                    self._shared,
                    window_s=self.settings.stream_batch_window_ms / 1000.0,
                    max_batch=self.settings.stream_max_batch,
                    observe=observe,
                )
                self._batcher.start()
            return self._batcher

    async def warm(self) -> None:
        """Set the default backend up and run one blank frame through it (models loaded, code paths warm).

        Raises:
            ServerFailureError: the backend could not be set up or failed on the frame.
        """
        if self.default_backend == "mediapipe":
            detector = await self._setup(self.default_backend)
            await asyncio.to_thread(detector.close)
        else:
            await self._shared_batcher(self.default_backend)

    async def close(self) -> None:
        """Stop the shared batcher and release the shared detector."""
        if self._batcher is not None:
            await self._batcher.close()
            self._batcher = None
        if self._shared is not None:
            await asyncio.to_thread(self._shared.close)
            self._shared = None
