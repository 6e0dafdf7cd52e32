"""Prometheus view of the sampler's latest snapshot, named by Prometheus' conventions.

Base units (``_bytes``, ``_ratio`` 0-1, ``_celsius``, ``_watts``, ``_hertz``, ``_joules_total``),
``gpu`` and ``uuid`` labels on every per-GPU series, one ``gpu_info`` series per GPU.
Collected at scrape time from memory: a scrape never calls NVML.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gpu_optimizer.devices.health import STATUS_LEVEL, HealthThresholds, assess
from gpu_optimizer.devices.nvml_reader import THROTTLE_REASONS
from gpu_optimizer.devices.sampler import GpuSampler

LABELS = ["gpu", "uuid"]


class GpuCollector(Collector):
    def __init__(self, sampler: GpuSampler, thresholds: HealthThresholds) -> None:
        self.sampler = sampler
        self.thresholds = thresholds

    def collect(self) -> Iterator[Metric]:
        snap = self.sampler.latest

        def gauge(name: str, doc: str, extra: list[str] | None = None) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=LABELS + (extra or []))

        info = gauge("gpu_info", "GPU model, driver and CUDA version (value 1)", ["name", "driver", "cuda"])
        total = gauge("gpu_memory_total_bytes", "Framebuffer memory of the GPU")
        used = gauge("gpu_memory_used_bytes", "Framebuffer memory in use")
        free = gauge("gpu_memory_free_bytes", "Framebuffer memory free")
        util = gauge("gpu_utilization_ratio", "Fraction of time a kernel ran over the last sample period")
        mem_util = gauge("gpu_memory_utilization_ratio", "Fraction of time device memory was read or written")
        temp = gauge("gpu_temperature_celsius", "GPU core temperature")
        power = gauge("gpu_power_watts", "Power draw")
        limit = gauge("gpu_power_limit_watts", "Enforced power limit")
        clocks = gauge("gpu_clock_hertz", "Current clock frequency", ["clock"])
        throttle = gauge("gpu_throttle_active", "1 while the clock-event reason is active", ["reason"])
        health = gauge("gpu_health_status", "0 ok, 1 warning, 2 critical, by the configured thresholds")
        alerts = gauge("gpu_alerts", "Active alerts by kind and severity", ["kind", "severity"])
        proc_mem = gauge("gpu_process_memory_bytes", "GPU memory held by each process", ["pid", "process"])
        energy = CounterMetricFamily(
            "gpu_energy_joules", "Energy used since the driver loaded", labels=LABELS
        )
        for g in snap.gpus:
            lv = [str(g.index), g.uuid]
            info.add_metric([*lv, g.name, snap.driver_version or "", snap.cuda_driver_version or ""], 1)
            total.add_metric(lv, g.memory_total_bytes)
            used.add_metric(lv, g.memory_used_bytes)
            free.add_metric(lv, g.memory_free_bytes)
            for family, value in (
                (util, g.utilization_gpu_ratio),
                (mem_util, g.utilization_memory_ratio),
                (temp, g.temperature_celsius),
                (power, g.power_draw_watts),
                (limit, g.power_limit_watts),
            ):
                if value is not None:
                    family.add_metric(lv, value)
            if g.energy_joules is not None:
                energy.add_metric(lv, g.energy_joules)
            for clock, hz in (
                ("sm", g.clock_sm_hz),
                ("memory", g.clock_memory_hz),
                ("graphics", g.clock_graphics_hz),
            ):
                if hz is not None:
                    clocks.add_metric([*lv, clock], hz)
            for reason in THROTTLE_REASONS.values():
                throttle.add_metric([*lv, reason], 1.0 if reason in g.throttle_reasons else 0.0)
            status, active = assess(g, self.thresholds)
            health.add_metric(lv, STATUS_LEVEL[status])
            for a in active:
                alerts.add_metric([*lv, a.kind, a.severity], 1)
            for p in g.processes:
                if p.used_memory_bytes is not None:
                    proc_mem.add_metric([*lv, str(p.pid), p.name], p.used_memory_bytes)
        yield from (
            info,
            total,
            used,
            free,
            util,
            mem_util,
            temp,
            power,
            limit,
            clocks,
            throttle,
            health,
            alerts,
            proc_mem,
            energy,
        )

        mode = GaugeMetricFamily("gpuopt_gpu_count", "GPUs NVML reports (0 in CPU mode)")
        mode.add_metric([], len(snap.gpus))
        reads = CounterMetricFamily("gpuopt_nvml_reads", "NVML sampler reads")
        reads.add_metric([], self.sampler.reads)
        errors = CounterMetricFamily("gpuopt_nvml_read_errors", "NVML sampler reads that raised")
        errors.add_metric([], self.sampler.errors)
        age = GaugeMetricFamily("gpuopt_nvml_read_duration_seconds", "Duration of the latest NVML read")
        age.add_metric([], snap.read_seconds)
        yield from (mode, reads, errors, age)
