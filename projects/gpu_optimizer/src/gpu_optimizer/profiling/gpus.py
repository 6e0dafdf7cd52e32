"""Target GPUs: the documented table in gpus.json, or a plain memory budget in GB."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

MIB = 1024**2
GIB = 1024**3


@dataclass(frozen=True)
class GpuTarget:
    """A device to fit a training step on.

    `memory_bytes` is the device memory; `context_bytes` the CUDA context outside PyTorch's
    allocator; `cublas_workspace_bytes` what cuBLAS takes from the caching allocator;
    `cudnn_workspace_bytes` an allowance for convolution workspaces (conv models only).
    """

    name: str
    memory_bytes: int
    context_bytes: int
    cublas_workspace_bytes: int
    cudnn_workspace_bytes: int
    description: str = ""


@functools.cache
def _table() -> dict[str, Any]:
    text = resources.files("gpu_optimizer.profiling").joinpath("gpus.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


def gpu_names() -> list[str]:
    """Names of the GPUs in the table."""
    return [g["name"] for g in _table()["gpus"]]


def _target(entry: dict[str, Any], defaults: dict[str, Any]) -> GpuTarget:
    return GpuTarget(
        name=entry["name"],
        memory_bytes=int(float(entry["memory_gib"]) * GIB),
        context_bytes=int(float(entry.get("context_mib", defaults["context_mib"])) * MIB),
        cublas_workspace_bytes=int(float(entry.get("cublas_workspace_mib", 8.125)) * MIB),
        cudnn_workspace_bytes=int(
            float(entry.get("cudnn_workspace_mib", defaults["cudnn_workspace_mib"])) * MIB
        ),
        description=entry.get("description", ""),
    )


def resolve_gpu(value: str) -> GpuTarget:
    """A GPU by table name (case-insensitive) or a budget in GB (binary, e.g. "12" or "12.5").

    A bare budget gets the table's default context and workspace allowances. Raises ValueError
    for an unknown name or a non-positive budget.
    """
    table = _table()
    defaults = table["defaults"]
    key = value.strip().lower()
    for entry in table["gpus"]:
        if entry["name"] == key:
            return _target(entry, defaults)
    try:
        gib = float(key.removesuffix("gb").removesuffix("gib"))
    except ValueError:
        raise ValueError(
            f"unknown GPU {value!r}: give a memory size in GB or one of {', '.join(gpu_names())}"
        ) from None
    if not 0 < gib <= 100_000:
        raise ValueError(f"GPU memory must be between 0 and 100000 GB, got {value!r}")
    entry = {"name": f"{gib:g} GB", "memory_gib": gib, "description": "memory budget"}
    return _target(entry, defaults)
