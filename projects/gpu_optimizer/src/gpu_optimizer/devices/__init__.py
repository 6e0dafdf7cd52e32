"""GPU inventory, health and sampling through NVML."""

from gpu_optimizer.devices.health import HealthThresholds, assess
from gpu_optimizer.devices.nvml_reader import DeviceSnapshot, GpuProcess, GpuStatus, read_snapshot
from gpu_optimizer.devices.sampler import GpuSampler

__all__ = [
    "DeviceSnapshot",
    "GpuProcess",
    "GpuSampler",
    "GpuStatus",
    "HealthThresholds",
    "assess",
    "read_snapshot",
]
