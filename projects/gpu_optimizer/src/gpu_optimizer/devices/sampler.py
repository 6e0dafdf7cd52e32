"""One background sampler per process reads NVML at a fixed interval.

Requests and Prometheus scrapes read the latest snapshot; none of them touches NVML,
so a slow or hung driver call never blocks the API.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from gpu_optimizer.devices.nvml_reader import DeviceSnapshot, read_snapshot

log = logging.getLogger(__name__)


class GpuSampler:
    """Reads ``reader()`` every ``interval_s`` seconds in a daemon thread."""

    def __init__(self, interval_s: float = 1.0, reader: Callable[[], DeviceSnapshot] = read_snapshot) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.interval_s = interval_s
        self._reader = reader
        self._latest: DeviceSnapshot | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reads = 0
        self.errors = 0
        self.last_success: float | None = None

    @property
    def latest(self) -> DeviceSnapshot:
        """The newest snapshot; the first read happens synchronously if none was taken yet."""
        with self._lock:
            snapshot = self._latest
        return snapshot if snapshot is not None else self.sample_once()

    def sample_once(self) -> DeviceSnapshot:
        try:
            snapshot = self._reader()
        except Exception as exc:  # a driver fault must not kill the sampler
            self.errors += 1
            log.exception("NVML read failed")
            snapshot = DeviceSnapshot(time.time(), "cpu", None, None, error=f"read failed: {exc}")
        else:
            self.last_success = snapshot.taken_at
        with self._lock:
            self._latest = snapshot
            self.reads += 1
        return snapshot

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.sample_once()
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="gpu-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 5)
            self._thread = None
