"""The registry of open streams and the detection paths they use (one per backend, opened on demand)."""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Callable

from pose_analyzer.detection.options import DetectorOptions
from pose_analyzer.detection.paths import DetectionPath, StreamDetector, open_path
from pose_analyzer.metrics import StreamMetrics
from pose_analyzer.multiview.session3d import Live3DSessions
from pose_analyzer.settings import PoseSettings
from pose_analyzer.streaming.errors import ServerFailureError, ServiceUnavailableError, StreamPolicyError

log = logging.getLogger(__name__)

STREAM_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class StreamHub:
    """Admits streams (id, limit) and hands each one a detector handle on its backend's path.

    ``default_backend`` is the concrete backend chosen at start-up ("auto" already resolved);
    ``options`` build every backend's detector.  Use from one event loop.
    """

    def __init__(
        self,
        settings: PoseSettings,
        metrics: StreamMetrics,
        default_backend: str,
        options: DetectorOptions,
    ) -> None:
        self.max_streams = settings.max_streams
        self.metrics = metrics
        self.default_backend = default_backend
        self._settings = settings
        self._options = options
        # Each open stream's ``interrupt(reason)``: called when the service stops.
        self._streams: dict[str, Callable[[str], None]] = {}
        # Connections admitted and not yet ``ended`` (their end committed): what a drain waits for.
        self._connections = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.draining = False
        self._paths: dict[str, DetectionPath] = {}
        # The open 3D sessions (streams that named a rig), by database session id.
        self.sessions3d = Live3DSessions()
        self.compute_slots = settings.stream_compute_slots or (os.cpu_count() or 1) + 1
        # Bounds the frames of per-stream detectors in analysis at once (see the setting).
        self.compute = asyncio.Semaphore(self.compute_slots)

    @property
    def active(self) -> int:
        return len(self._streams)

    def register(self, stream_id: str, interrupt: Callable[[str], None]) -> None:
        """Admit ``stream_id``; ``interrupt(reason)`` is called if the service stops meanwhile.

        Every admitted stream must call ``ended`` once its end is committed.

        Raises:
            ServiceUnavailableError: the service drains (``drain``): nothing is recorded.
            StreamPolicyError: an invalid id, one already streaming, or ``max_streams`` reached.
        """
        if self.draining:
            raise ServiceUnavailableError(
                "the service is shutting down and takes no new streams; reconnect (another replica "
                "or this one once restarted will take the stream)",
                "draining",
            )
        if not STREAM_ID.match(stream_id):
            raise StreamPolicyError(
                "stream id must be 1-64 characters of letters, digits, '_', '-', '.', ':'",
                "invalid_stream_id",
            )
        if stream_id in self._streams:
            raise StreamPolicyError(f"stream {stream_id!r} is already streaming", "stream_busy")
        if len(self._streams) >= self.max_streams:
            raise StreamPolicyError(f"too many streams: the limit is {self.max_streams}", "too_many_streams")
        self._streams[stream_id] = interrupt
        self._connections += 1
        self._idle.clear()
        self.metrics.active_streams.set(len(self._streams))

    def unregister(self, stream_id: str) -> None:
        """Free ``stream_id`` (its connection is ending; it calls ``ended`` once that is committed)."""
        self._streams.pop(stream_id, None)
        self.metrics.active_streams.set(len(self._streams))

    def ended(self) -> None:
        """A connection admitted by ``register`` is over, its end committed (or given up)."""
        self._connections -= 1
        if self._connections <= 0:
            self._connections = 0
            self._idle.set()

    async def drain(self, grace_s: float, reason: str) -> int:
        """Take no new streams, let the open ones run until they end or ``grace_s`` passes, then
        interrupt those left (``interrupt_all``) and wait until their ends are committed.

        Returns how many streams had to be interrupted.
        """
        self.draining = True
        try:
            await asyncio.wait_for(self._idle.wait(), grace_s)
        except TimeoutError:
            pass
        else:
            return 0
        count = self.interrupt_all(reason)
        await self._idle.wait()
        return count

    def interrupt_all(self, reason: str) -> int:
        """Tell every open stream that the service stops (they end as "interrupted"); returns how many."""
        interrupts = list(self._streams.values())
        for interrupt in interrupts:
            interrupt(reason)
        return len(interrupts)

    def path(self, backend: str | None = None) -> DetectionPath:
        """The detection path of ``backend`` (None: the service default), made on first use.

        Raises:
            UnknownBackendError: an unknown name.
        """
        name = backend or self.default_backend
        path = self._paths.get(name)
        if path is None:
            inference = self.metrics.inference_seconds.labels(name)

            def observe_batch(size: int, seconds: float) -> None:
                self.metrics.batch_size.observe(size)
                inference.observe(seconds)

            path = open_path(
                name,
                self._options,
                compute=self.compute,
                batch_window_s=self._settings.stream_batch_window_ms / 1000.0,
                max_batch=self._max_batch(),
                observe_inference=inference.observe,
                observe_batch=observe_batch,
                batch_replicas=self._batch_replicas(),
                compute_slots=self.compute_slots,
            )
            self._paths[name] = path
        return path

    def _max_batch(self) -> int:
        if self._settings.stream_max_batch:
            return self._settings.stream_max_batch
        return 1 if self._options.device == "cpu" else 8

    def _batch_replicas(self) -> int:
        if self._settings.stream_batch_replicas:
            return self._settings.stream_batch_replicas
        return 1 if self._options.device != "cpu" else min(2, os.cpu_count() or 1)

    async def detector(self, path: DetectionPath) -> StreamDetector:
        """A new stream's detector handle on ``path``.

        Raises:
            ServerFailureError: the backend could not be set up (the reason goes to the log).
        """
        try:
            return await path.open_stream()
        except Exception as exc:
            log.exception("a pose backend could not start", extra={"backend": path.backend})
            raise ServerFailureError(f"the {path.backend} backend could not start", "backend_failed") from exc

    async def warm(self) -> None:
        """Set the default backend up and run one blank frame through it.

        Raises:
            Exception: whatever setting the model up raised.
        """
        await self.path().warm()

    async def close(self) -> None:
        """Release every path (the shared batcher and model)."""
        paths, self._paths = list(self._paths.values()), {}
        for path in paths:
            await path.close()
