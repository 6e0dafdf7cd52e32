"""NVML sampler, health rules and Prometheus view, on this machine's real NVML call path."""

from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gpu_optimizer.devices import (
    DeviceSnapshot,
    GpuSampler,
    GpuStatus,
    HealthThresholds,
    assess,
    read_snapshot,
)
from gpu_optimizer.devices.metrics import GpuCollector
from service_kit.nvml import read_inventory


def gpu(
    index: int = 0,
    temp: float | None = 50.0,
    used: int = 1 << 30,
    total: int = 8 << 30,
    throttle: tuple[str, ...] = (),
) -> GpuStatus:
    return GpuStatus(
        index=index,
        name="Test GPU",
        uuid=f"GPU-{index}",
        memory_total_bytes=total,
        memory_used_bytes=used,
        memory_free_bytes=total - used,
        utilization_gpu_ratio=0.5,
        utilization_memory_ratio=0.25,
        temperature_celsius=temp,
        power_draw_watts=120.0,
        power_limit_watts=300.0,
        energy_joules=1234.5,
        clock_sm_hz=1.5e9,
        clock_memory_hz=5e9,
        clock_graphics_hz=1.5e9,
        throttle_reasons=throttle,
        processes=(),
    )


def test_real_snapshot_matches_nvml_inventory() -> None:
    snap = read_snapshot()
    inventory = read_inventory()
    assert [g.uuid for g in snap.gpus] == [g.uuid for g in inventory.gpus]
    if not inventory.gpus:
        assert snap.mode == "cpu"
        assert snap.error
        assert snap.driver_version is None


@pytest.mark.parametrize(
    ("status", "expected", "kinds"),
    [
        (gpu(), "ok", []),
        (gpu(temp=82), "warning", ["temperature"]),
        (gpu(temp=95), "critical", ["temperature"]),
        (gpu(used=int(7.5 * 2**30)), "warning", ["memory"]),
        (gpu(used=int(7.9 * 2**30)), "critical", ["memory"]),
        (gpu(throttle=("gpu_idle",)), "ok", []),
        (gpu(throttle=("hw_thermal_slowdown",)), "warning", ["throttling"]),
        (gpu(temp=None), "ok", []),
    ],
)
def test_health_by_thresholds(status: GpuStatus, expected: str, kinds: list[str]) -> None:
    level, alerts = assess(status, HealthThresholds())
    assert level == expected
    assert [a.kind for a in alerts] == kinds


def test_sampler_reads_in_background_and_survives_reader_failures() -> None:
    calls = {"n": 0}

    def flaky() -> DeviceSnapshot:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("driver hiccup")
        return read_snapshot()

    sampler = GpuSampler(0.05, reader=flaky)
    sampler.start()
    deadline = time.monotonic() + 10
    while sampler.reads < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    sampler.stop()
    assert sampler.reads >= 4
    assert sampler.errors == 1
    reads = sampler.reads
    time.sleep(0.2)
    assert sampler.reads == reads, "stop() must end the thread"


def test_sampler_rejects_bad_interval() -> None:
    with pytest.raises(ValueError, match="interval_s"):
        GpuSampler(0)


def _scrape(snapshot: DeviceSnapshot) -> dict[str, list]:  # type: ignore[type-arg]
    registry = CollectorRegistry()
    registry.register(GpuCollector(GpuSampler(1.0, reader=lambda: snapshot), HealthThresholds()))
    text = generate_latest(registry).decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_metrics_follow_prometheus_conventions_per_gpu() -> None:
    snap = DeviceSnapshot(time.time(), "gpu", "580.1", "13.0", gpus=(gpu(0), gpu(1, temp=95)))
    families = _scrape(snap)
    assert [s.value for s in families["gpu_memory_total_bytes"]] == [8 << 30, 8 << 30]
    assert {s.labels["uuid"] for s in families["gpu_temperature_celsius"]} == {"GPU-0", "GPU-1"}
    assert families["gpu_utilization_ratio"][0].value == 0.5
    assert families["gpu_power_watts"][0].value == 120.0
    energy = {s.name: s.value for s in families["gpu_energy_joules"]}
    assert energy["gpu_energy_joules_total"] == 1234.5
    info = families["gpu_info"][0]
    assert info.labels == {"gpu": "0", "uuid": "GPU-0", "name": "Test GPU", "driver": "580.1", "cuda": "13.0"}
    health = {s.labels["gpu"]: s.value for s in families["gpu_health_status"]}
    assert health == {"0": 0, "1": 2}
    assert families["gpuopt_gpu_count"][0].value == 2


def test_metrics_in_cpu_mode_have_no_gpu_series() -> None:
    families = (
        _scrape(read_snapshot())
        if not read_inventory().gpus
        else _scrape(DeviceSnapshot(time.time(), "cpu", None, None, error="no GPU"))
    )
    assert families["gpuopt_gpu_count"][0].value == 0
    assert families["gpu_memory_used_bytes"] == []
