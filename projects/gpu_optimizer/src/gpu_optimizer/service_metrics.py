"""gpu_optimizer's own Prometheus metrics (beyond the per-GPU ones in devices/metrics.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gpu_optimizer.checkpoints.catalog import CheckpointCatalog


@dataclass(frozen=True, slots=True)
class ServiceMetrics:
    jobs: Counter
    oom_events: Counter
    checkpoint_verify_seconds: Histogram
    checkpoint_verified_bytes: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ServiceMetrics:
        return cls(
            jobs=Counter("gpuopt_jobs", "Background job state changes", ["kind", "state"], registry=registry),
            oom_events=Counter(
                "gpuopt_oom_events",
                "CUDA out-of-memory errors met by profiling jobs and batch searches",
                ["source"],
                registry=registry,
            ),
            checkpoint_verify_seconds=Histogram(
                "gpuopt_checkpoint_verify_seconds",
                "Time to hash and check one checkpoint",
                registry=registry,
                buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300),
            ),
            checkpoint_verified_bytes=Counter(
                "gpuopt_checkpoint_verified_bytes", "Bytes read to verify checkpoints", registry=registry
            ),
        )


class CheckpointCollector(Collector):
    """Per-run checkpoint count, size, newest step and save time.

    Manifests are read at most every ``ttl_s`` seconds, not on every scrape.
    """

    def __init__(self, catalog: CheckpointCatalog, ttl_s: float = 10.0) -> None:
        self.catalog = catalog
        self.ttl_s = ttl_s
        self._cached: list[Metric] = []
        self._at = 0.0

    def collect(self) -> Iterator[Metric]:
        if time.monotonic() - self._at > self.ttl_s:
            self._cached = self._read()
            self._at = time.monotonic()
        yield from self._cached

    def _read(self) -> list[Metric]:
        count = GaugeMetricFamily("gpuopt_checkpoints", "Valid checkpoints per run", labels=["run"])
        size = GaugeMetricFamily(
            "gpuopt_checkpoint_bytes", "Bytes of the valid checkpoints of a run", labels=["run"]
        )
        step = GaugeMetricFamily(
            "gpuopt_checkpoint_latest_step", "Step of the newest checkpoint", labels=["run"]
        )
        save = GaugeMetricFamily(
            "gpuopt_checkpoint_last_save_seconds",
            "How long the newest checkpoint took to write",
            labels=["run"],
        )
        last_size = GaugeMetricFamily(
            "gpuopt_checkpoint_last_size_bytes", "Size of the newest checkpoint", labels=["run"]
        )
        for run in self.catalog.runs():
            infos = self.catalog.list(run)
            count.add_metric([run], len(infos))
            size.add_metric([run], sum(i.size_bytes for i in infos))
            if infos:
                newest = infos[-1]
                step.add_metric([run], newest.step)
                last_size.add_metric([run], newest.size_bytes)
                seconds = newest.extra.get("save_seconds") if isinstance(newest.extra, dict) else None
                if isinstance(seconds, int | float):
                    save.add_metric([run], float(seconds))
        return [count, size, step, save, last_size]
