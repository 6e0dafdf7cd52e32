"""Wire models of the gpu_optimizer API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class GpuProcessOut(BaseModel):
    pid: int
    name: str
    used_memory_bytes: int | None
    kind: str


class AlertOut(BaseModel):
    gpu: int
    uuid: str
    severity: Literal["warning", "critical"]
    kind: str
    message: str


class GpuOut(BaseModel):
    index: int
    name: str
    uuid: str
    memory_total_bytes: int
    memory_used_bytes: int
    memory_free_bytes: int
    memory_used_ratio: float
    utilization_gpu_ratio: float | None
    utilization_memory_ratio: float | None
    temperature_celsius: float | None
    power_draw_watts: float | None
    power_limit_watts: float | None
    energy_joules: float | None
    clock_sm_hz: float | None
    clock_memory_hz: float | None
    clock_graphics_hz: float | None
    throttle_reasons: list[str]
    processes: list[GpuProcessOut]
    health: Literal["ok", "warning", "critical"]
    alerts: list[AlertOut]


class GpuListOut(BaseModel):
    mode: Literal["gpu", "cpu"]
    sampled_at: float
    driver_version: str | None
    cuda_driver_version: str | None
    cuda_runtime_version: str
    rocm_runtime_version: str
    note: str | None
    gpus: list[GpuOut]
    alerts: list[AlertOut]
