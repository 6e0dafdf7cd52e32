"""Turn a GPU's readings into a health status and alerts, by thresholds from settings."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from gpu_optimizer.devices.nvml_reader import GpuStatus

STATUS_LEVEL = {"ok": 0, "warning": 1, "critical": 2}
# Clock-event reasons that mean the GPU is slowed by heat or power trouble, not by choice.
BAD_THROTTLING = frozenset(
    {"hw_slowdown", "hw_thermal_slowdown", "sw_thermal_slowdown", "hw_power_brake_slowdown"}
)


@dataclass(frozen=True, slots=True)
class HealthThresholds:
    temperature_warning_celsius: float = 80.0
    temperature_critical_celsius: float = 90.0
    memory_warning_ratio: float = 0.90
    memory_critical_ratio: float = 0.97


@dataclass(frozen=True, slots=True)
class Alert:
    gpu: int
    uuid: str
    severity: str  # "warning" or "critical"
    kind: str  # "temperature", "memory", "throttling"
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def assess(gpu: GpuStatus, thresholds: HealthThresholds) -> tuple[str, list[Alert]]:
    """Return the GPU's status ("ok", "warning", "critical") and the alerts behind it."""
    alerts: list[Alert] = []

    def alert(severity: str, kind: str, message: str) -> None:
        alerts.append(Alert(gpu.index, gpu.uuid, severity, kind, message))

    temp = gpu.temperature_celsius
    if temp is not None and temp >= thresholds.temperature_critical_celsius:
        alert("critical", "temperature", f"{temp:.0f} °C >= {thresholds.temperature_critical_celsius:.0f} °C")
    elif temp is not None and temp >= thresholds.temperature_warning_celsius:
        alert("warning", "temperature", f"{temp:.0f} °C >= {thresholds.temperature_warning_celsius:.0f} °C")
    used = gpu.memory_used_ratio
    if used >= thresholds.memory_critical_ratio:
        alert("critical", "memory", f"memory {used:.0%} used >= {thresholds.memory_critical_ratio:.0%}")
    elif used >= thresholds.memory_warning_ratio:
        alert("warning", "memory", f"memory {used:.0%} used >= {thresholds.memory_warning_ratio:.0%}")
    bad = sorted(BAD_THROTTLING.intersection(gpu.throttle_reasons))
    if bad:
        alert("warning", "throttling", "clocks slowed: " + ", ".join(bad))
    status = max((a.severity for a in alerts), key=STATUS_LEVEL.__getitem__, default="ok")
    return status, alerts
