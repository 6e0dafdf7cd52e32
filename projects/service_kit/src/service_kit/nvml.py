"""Safe access to NVIDIA's management library: a machine without a GPU or driver is 'no GPU', not an error."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GpuSummary:
    index: int
    name: str
    uuid: str
    memory_total_bytes: int


@dataclass(frozen=True, slots=True)
class NvmlInventory:
    """What NVML reports about the machine; ``error`` says why it is empty when NVML is unusable."""

    available: bool
    driver_version: str | None
    cuda_driver_version: str | None
    gpus: tuple[GpuSummary, ...]
    error: str | None = None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@contextmanager
def nvml_session() -> Iterator[Any]:
    """Yield the initialised ``pynvml`` module; raises ``pynvml.NVMLError`` where there is no usable NVML."""
    import pynvml

    pynvml.nvmlInit()
    try:
        yield pynvml
    finally:
        pynvml.nvmlShutdown()


def read_inventory() -> NvmlInventory:
    """List the GPUs through NVML; on a machine without one, an empty inventory with the reason."""
    try:
        import pynvml
    except ImportError as exc:  # nvidia-ml-py is a dependency, but stay honest if it is absent
        return NvmlInventory(False, None, None, (), error=f"nvidia-ml-py not installed: {exc}")
    try:
        with nvml_session() as nv:
            cuda = nv.nvmlSystemGetCudaDriverVersion_v2()
            gpus = []
            for i in range(nv.nvmlDeviceGetCount()):
                handle = nv.nvmlDeviceGetHandleByIndex(i)
                gpus.append(
                    GpuSummary(
                        index=i,
                        name=_text(nv.nvmlDeviceGetName(handle)),
                        uuid=_text(nv.nvmlDeviceGetUUID(handle)),
                        memory_total_bytes=int(nv.nvmlDeviceGetMemoryInfo(handle).total),
                    )
                )
            return NvmlInventory(
                available=True,
                driver_version=_text(nv.nvmlSystemGetDriverVersion()),
                cuda_driver_version=f"{cuda // 1000}.{(cuda % 1000) // 10}",
                gpus=tuple(gpus),
            )
    except pynvml.NVMLError as exc:
        log.debug("NVML unavailable: %s", exc)
        return NvmlInventory(False, None, None, (), error=f"{type(exc).__name__}: {exc}")
