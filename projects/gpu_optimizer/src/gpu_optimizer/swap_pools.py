"""Swap pools reported by training processes, and their Prometheus view.

A training process that uses a ``TensorSwapper`` runs a ``SwapPoolReporter``, which PUTs
``swapper.stats()`` to ``/api/swap-pools/{name}`` every few seconds.  The service keeps the
latest report of each pool in memory (reports are cheap to resend, so nothing is stored).

Reports come from the network, so everything in them is bounded: numbers are finite and below
physical limits (``MAX_BYTES``, ``MAX_COUNT``), and the registry holds at most ``max_pools``
pools, ``max_pools_per_process`` from any one process, so memory and /metrics stay bounded.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any, Literal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict, Field

from service_kit.errors import ServiceError

log = logging.getLogger(__name__)
TierName = Literal["device", "host", "disk"]
POOL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# 1 PiB: more than any tier of one process holds or moves per second.  Counters may run long, so
# they are bounded where float64 (Prometheus) still counts exactly.  A year of moving.
MAX_BYTES = 1 << 50
MAX_COUNT = 1 << 53
MAX_SECONDS = 366 * 24 * 3600.0
# The largest process id Linux allows (pid_max on 64-bit).
MAX_PID = 1 << 22


class TooManyPoolsError(ServiceError):
    status_code = 409
    code = "too_many_swap_pools"


class _Finite(BaseModel):
    # Infinity and NaN are refused even though Python's JSON reads them.
    model_config = ConfigDict(allow_inf_nan=False)


class TierStats(_Finite):
    bytes: int = Field(ge=0, le=MAX_BYTES)
    tensors: int = Field(ge=0, le=MAX_COUNT)
    budget: int | None = Field(default=None, ge=0, le=MAX_BYTES)
    swaps_in: int = Field(ge=0, le=MAX_COUNT)
    swaps_out: int = Field(ge=0, le=MAX_COUNT)


class SwapPoolReport(_Finite):
    """What a swapper's ``stats()`` says, plus who sent it."""

    pid: int = Field(ge=1, le=MAX_PID)
    hostname: str = Field(min_length=1, max_length=255)
    device: str = Field(max_length=64)
    tiers: dict[TierName, TierStats]
    host_pool_bytes: int = Field(default=0, ge=0, le=MAX_BYTES)
    bytes_moved: int = Field(ge=0, le=MAX_COUNT)
    move_seconds: float = Field(ge=0, le=MAX_SECONDS)
    throughput_bytes_per_s: float = Field(ge=0, le=MAX_BYTES)


class SwapPoolOut(SwapPoolReport):
    name: str
    reported_at: float
    age_s: float
    stale: bool


class SwapPoolRegistry:
    """Latest report per pool; a pool that has not reported for ``stale_after_s`` is marked stale.

    A new pool beyond ``max_pools`` first makes room by forgetting stale pools; if none is
    stale it is refused, as is a process's pool beyond ``max_pools_per_process``.
    """

    def __init__(
        self, stale_after_s: float = 60.0, max_pools: int = 256, max_pools_per_process: int = 32
    ) -> None:
        self.stale_after_s = stale_after_s
        self.max_pools = max_pools
        self.max_pools_per_process = max_pools_per_process
        self._pools: dict[str, tuple[SwapPoolReport, float]] = {}
        self._lock = threading.Lock()

    def report(self, name: str, report: SwapPoolReport) -> SwapPoolOut:
        """Record ``report`` as pool ``name``'s latest; raises ``TooManyPoolsError`` at a cap."""
        now = time.time()
        with self._lock:
            if name not in self._pools:
                self._admit(report, now)
            self._pools[name] = (report, now)
        return self._out(name, report, now, now)

    def _admit(self, report: SwapPoolReport, now: float) -> None:
        process = (report.hostname, report.pid)
        same = sum(1 for rep, _ in self._pools.values() if (rep.hostname, rep.pid) == process)
        if same >= self.max_pools_per_process:
            raise TooManyPoolsError(
                f"process {report.pid} on {report.hostname!r} already reports "
                f"{self.max_pools_per_process} swap pools, the most one process may"
            )
        if len(self._pools) >= self.max_pools:
            for old in [n for n, (_, at) in self._pools.items() if now - at > self.stale_after_s]:
                del self._pools[old]
        if len(self._pools) >= self.max_pools:
            raise TooManyPoolsError(
                f"the service already tracks {self.max_pools} swap pools; "
                "DELETE pools that are gone, or wait until they turn stale"
            )

    def _out(self, name: str, report: SwapPoolReport, at: float, now: float) -> SwapPoolOut:
        age = now - at
        return SwapPoolOut(
            **report.model_dump(), name=name, reported_at=at, age_s=age, stale=age > self.stale_after_s
        )

    def list(self) -> list[SwapPoolOut]:
        now = time.time()
        with self._lock:
            items = sorted(self._pools.items())
        return [self._out(name, rep, at, now) for name, (rep, at) in items]

    def get(self, name: str) -> SwapPoolOut | None:
        with self._lock:
            entry = self._pools.get(name)
        return None if entry is None else self._out(name, entry[0], entry[1], time.time())

    def remove(self, name: str) -> bool:
        with self._lock:
            return self._pools.pop(name, None) is not None


class SwapPoolCollector(Collector):
    def __init__(self, registry: SwapPoolRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        resident = GaugeMetricFamily(
            "gpuopt_swap_pool_bytes", "Bytes held per swap tier", labels=["pool", "tier"]
        )
        tensors = GaugeMetricFamily(
            "gpuopt_swap_pool_tensors", "Tensors held per swap tier", labels=["pool", "tier"]
        )
        swaps = CounterMetricFamily(
            "gpuopt_swaps", "Tensors moved into or out of a tier", labels=["pool", "tier", "direction"]
        )
        moved = CounterMetricFamily("gpuopt_swap_moved_bytes", "Bytes moved between tiers", labels=["pool"])
        seconds = CounterMetricFamily(
            "gpuopt_swap_move_seconds", "Time spent moving tensors", labels=["pool"]
        )
        throughput = GaugeMetricFamily(
            "gpuopt_swap_throughput_bytes_per_second", "Mean swap throughput", labels=["pool"]
        )
        for pool in self.registry.list():
            for tier, stats in pool.tiers.items():
                resident.add_metric([pool.name, tier], stats.bytes)
                tensors.add_metric([pool.name, tier], stats.tensors)
                swaps.add_metric([pool.name, tier, "in"], stats.swaps_in)
                swaps.add_metric([pool.name, tier, "out"], stats.swaps_out)
            moved.add_metric([pool.name], pool.bytes_moved)
            seconds.add_metric([pool.name], pool.move_seconds)
            throughput.add_metric([pool.name], pool.throughput_bytes_per_s)
        yield from (resident, tensors, swaps, moved, seconds, throughput)


class SwapPoolReporter:
    """Background thread in a training process that sends ``stats()`` to the service.

    A service that is down or slow never disturbs training: failures are logged and retried
    at the next interval.
    """

    def __init__(
        self,
        stats: Callable[[], dict[str, Any]],
        service_url: str,
        name: str,
        interval_s: float = 5.0,
        api_key: str | None = None,
    ) -> None:
        self._stats = stats
        self._url = f"{service_url.rstrip('/')}/api/swap-pools/{name}"
        self._interval = interval_s
        self._api_key = api_key
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"swap-reporter-{name}", daemon=True)
        self.sent = 0
        self.failures = 0

    def send_once(self) -> bool:
        body = {**self._stats(), "pid": os.getpid(), "hostname": socket.gethostname()}
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["X-API-Key"] = self._api_key
        request = urllib.request.Request(self._url, json.dumps(body).encode(), headers, method="PUT")
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                resp.read()
        except OSError as exc:
            self.failures += 1
            log.warning("swap pool report failed", extra={"url": self._url, "error": str(exc)})
            return False
        self.sent += 1
        return True

    def _run(self) -> None:
        while not self._stop.wait(0 if self.sent == 0 and self.failures == 0 else self._interval):
            self.send_once()

    def start(self) -> SwapPoolReporter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.send_once()
