"""What the host is made of, read from the real machine."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import psutil

from service_kit.nvml import read_inventory


@dataclass(frozen=True, slots=True)
class HostHardware:
    cpu_model: str
    cpu_cores_physical: int | None
    cpu_cores_logical: int
    ram_total_bytes: int
    gpus: list[dict[str, Any]]
    driver_version: str
    cuda_driver_version: str
    cuda_runtime_version: str
    rocm_runtime_version: str
    gpu_note: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux) or the platform module elsewhere."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def torch_cuda_runtime() -> str:
    """CUDA runtime torch was built with ('none' for a CPU build or without torch)."""
    try:
        import torch
    except ImportError:
        return "none"
    return str(torch.version.cuda) if torch.version.cuda else "none"


def torch_rocm_runtime() -> str:
    """ROCm (HIP) runtime torch was built with ('none' for CUDA and CPU builds or without torch)."""
    try:
        import torch
    except ImportError:
        return "none"
    hip = getattr(torch.version, "hip", None)
    return str(hip) if hip else "none"


@lru_cache(maxsize=1)
def host_hardware() -> HostHardware:
    """Read once per process: CPU, RAM and every GPU NVML reports ('none' where there is none)."""
    inv = read_inventory()
    gpus = [
        {"index": g.index, "name": g.name, "uuid": g.uuid, "memory_total_bytes": g.memory_total_bytes}
        for g in inv.gpus
    ]
    return HostHardware(
        cpu_model=cpu_model(),
        cpu_cores_physical=psutil.cpu_count(logical=False),
        cpu_cores_logical=os.cpu_count() or 1,
        ram_total_bytes=int(psutil.virtual_memory().total),
        gpus=gpus,
        driver_version=inv.driver_version or "none",
        cuda_driver_version=inv.cuda_driver_version or "none",
        cuda_runtime_version=torch_cuda_runtime(),
        rocm_runtime_version=torch_rocm_runtime(),
        gpu_note=None if gpus else f"no GPU: {inv.error or 'NVML reports no device'}",
    )
