"""One full read of every GPU through NVML, as plain data.

A machine without an NVIDIA driver yields a snapshot with ``mode == "cpu"`` and the
reason, never an exception.  Fields a GPU does not support (power on some boards,
energy on older ones) are ``None``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, TypeVar

import psutil

from service_kit.nvml import nvml_session

T = TypeVar("T")

# NVML clocks-event (throttle) reason bits, by the names nvidia-smi prints.
THROTTLE_REASONS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}


@dataclass(frozen=True, slots=True)
class GpuProcess:
    pid: int
    name: str
    used_memory_bytes: int | None
    kind: str  # "compute" or "graphics"


@dataclass(frozen=True, slots=True)
class GpuStatus:
    index: int
    name: str
    uuid: str
    memory_total_bytes: int
    memory_used_bytes: int
    memory_free_bytes: int
    utilization_gpu_ratio: float | None
    utilization_memory_ratio: float | None
    temperature_celsius: float | None
    power_draw_watts: float | None
    power_limit_watts: float | None
    energy_joules: float | None
    clock_sm_hz: float | None
    clock_memory_hz: float | None
    clock_graphics_hz: float | None
    throttle_reasons: tuple[str, ...]
    processes: tuple[GpuProcess, ...]

    @property
    def memory_used_ratio(self) -> float:
        return self.memory_used_bytes / self.memory_total_bytes if self.memory_total_bytes else 0.0


@dataclass(frozen=True, slots=True)
class DeviceSnapshot:
    """Everything one NVML read returned, and when."""

    taken_at: float
    mode: str  # "gpu" or "cpu"
    driver_version: str | None
    cuda_driver_version: str | None
    gpus: tuple[GpuStatus, ...] = ()
    error: str | None = None
    read_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _optional(nvml_error: type[Exception], call: Callable[[], T]) -> T | None:
    """The value of an NVML query, or None when this GPU does not support it."""
    try:
        return call()
    except nvml_error:
        return None


def _process_name(pid: int) -> str:
    try:
        return str(psutil.Process(pid).name())
    except (psutil.Error, OSError):
        return "?"


def _read_gpu(nv: Any, index: int) -> GpuStatus:
    err = nv.NVMLError
    h = nv.nvmlDeviceGetHandleByIndex(index)
    mem = nv.nvmlDeviceGetMemoryInfo(h)
    util = _optional(err, lambda: nv.nvmlDeviceGetUtilizationRates(h))
    power = _optional(err, lambda: nv.nvmlDeviceGetPowerUsage(h))
    limit = _optional(err, lambda: nv.nvmlDeviceGetEnforcedPowerLimit(h))
    energy = _optional(err, lambda: nv.nvmlDeviceGetTotalEnergyConsumption(h))
    reasons = _optional(err, lambda: nv.nvmlDeviceGetCurrentClocksEventReasons(h)) or 0

    def clock(kind: int) -> float | None:
        mhz = _optional(err, lambda: nv.nvmlDeviceGetClockInfo(h, kind))
        return None if mhz is None else float(mhz) * 1e6

    processes: list[GpuProcess] = []
    for kind, getter in (
        ("compute", nv.nvmlDeviceGetComputeRunningProcesses),
        ("graphics", nv.nvmlDeviceGetGraphicsRunningProcesses),
    ):
        running: list[Any] = _optional(err, partial(getter, h)) or []
        for proc in running:
            used = getattr(proc, "usedGpuMemory", None)
            processes.append(
                GpuProcess(
                    int(proc.pid),
                    _process_name(int(proc.pid)),
                    int(used) if isinstance(used, int) else None,
                    kind,
                )
            )
    return GpuStatus(
        index=index,
        name=_text(nv.nvmlDeviceGetName(h)),
        uuid=_text(nv.nvmlDeviceGetUUID(h)),
        memory_total_bytes=int(mem.total),
        memory_used_bytes=int(mem.used),
        memory_free_bytes=int(mem.free),
        utilization_gpu_ratio=None if util is None else util.gpu / 100.0,
        utilization_memory_ratio=None if util is None else util.memory / 100.0,
        temperature_celsius=_optional(
            err, lambda: float(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU))
        ),
        power_draw_watts=None if power is None else power / 1000.0,
        power_limit_watts=None if limit is None else limit / 1000.0,
        energy_joules=None if energy is None else energy / 1000.0,
        clock_sm_hz=clock(nv.NVML_CLOCK_SM),
        clock_memory_hz=clock(nv.NVML_CLOCK_MEM),
        clock_graphics_hz=clock(nv.NVML_CLOCK_GRAPHICS),
        throttle_reasons=tuple(name for bit, name in THROTTLE_REASONS.items() if reasons & bit),
        processes=tuple(processes),
    )


def read_snapshot() -> DeviceSnapshot:
    """Read every GPU once.  Without NVML (no driver, no GPU) the snapshot says ``mode="cpu"`` and why."""
    start = time.perf_counter()
    try:
        import pynvml
    except ImportError as exc:
        return DeviceSnapshot(time.time(), "cpu", None, None, error=f"nvidia-ml-py not installed: {exc}")
    try:
        with nvml_session() as nv:
            cuda = nv.nvmlSystemGetCudaDriverVersion_v2()
            gpus = tuple(_read_gpu(nv, i) for i in range(nv.nvmlDeviceGetCount()))
            driver = _text(nv.nvmlSystemGetDriverVersion())
    except pynvml.NVMLError as exc:
        return DeviceSnapshot(
            time.time(),
            "cpu",
            None,
            None,
            error=f"{type(exc).__name__}: {exc}",
            read_seconds=time.perf_counter() - start,
        )
    return DeviceSnapshot(
        taken_at=time.time(),
        mode="gpu" if gpus else "cpu",
        driver_version=driver,
        cuda_driver_version=f"{cuda // 1000}.{(cuda % 1000) // 10}",
        gpus=gpus,
        error=None if gpus else "NVML reports no device",
        read_seconds=time.perf_counter() - start,
    )
