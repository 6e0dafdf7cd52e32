"""GET /api/gpus and /api/gpus/{index}: inventory and health from the sampler's latest NVML read."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path

from gpu_optimizer.devices.health import assess
from gpu_optimizer.devices.nvml_reader import GpuStatus
from gpu_optimizer.resources import GpuOptResources, ResourcesDep
from gpu_optimizer.schemas import AlertOut, GpuListOut, GpuOut, GpuProcessOut
from service_kit.errors import NotFoundError
from service_kit.hardware import torch_cuda_runtime, torch_rocm_runtime
from service_kit.ops import require_api_key

router = APIRouter(prefix="/api/gpus", tags=["gpus"], dependencies=[Depends(require_api_key)])


def _gpu_out(gpu: GpuStatus, resources: GpuOptResources) -> GpuOut:
    status, alerts = assess(gpu, resources.thresholds)
    return GpuOut(
        index=gpu.index,
        name=gpu.name,
        uuid=gpu.uuid,
        memory_total_bytes=gpu.memory_total_bytes,
        memory_used_bytes=gpu.memory_used_bytes,
        memory_free_bytes=gpu.memory_free_bytes,
        memory_used_ratio=gpu.memory_used_ratio,
        utilization_gpu_ratio=gpu.utilization_gpu_ratio,
        utilization_memory_ratio=gpu.utilization_memory_ratio,
        temperature_celsius=gpu.temperature_celsius,
        power_draw_watts=gpu.power_draw_watts,
        power_limit_watts=gpu.power_limit_watts,
        energy_joules=gpu.energy_joules,
        clock_sm_hz=gpu.clock_sm_hz,
        clock_memory_hz=gpu.clock_memory_hz,
        clock_graphics_hz=gpu.clock_graphics_hz,
        throttle_reasons=list(gpu.throttle_reasons),
        processes=[
            GpuProcessOut(pid=p.pid, name=p.name, used_memory_bytes=p.used_memory_bytes, kind=p.kind)
            for p in gpu.processes
        ],
        health=status,  # type: ignore[arg-type]
        alerts=[AlertOut(**a.to_dict()) for a in alerts],
    )


@router.get(
    "", summary="Every GPU with memory, utilisation, temperature, power, clocks, processes and health"
)
def list_gpus(resources: ResourcesDep) -> GpuListOut:
    snap = resources.sampler.latest
    gpus = [_gpu_out(g, resources) for g in snap.gpus]
    return GpuListOut(
        mode=snap.mode,  # type: ignore[arg-type]
        sampled_at=snap.taken_at,
        driver_version=snap.driver_version,
        cuda_driver_version=snap.cuda_driver_version,
        cuda_runtime_version=torch_cuda_runtime(),
        rocm_runtime_version=torch_rocm_runtime(),
        note=snap.error,
        gpus=gpus,
        alerts=[a for g in gpus for a in g.alerts],
    )


@router.get("/{index}", summary="One GPU by its NVML index", responses={404: {"description": "no such GPU"}})
def get_gpu(resources: ResourcesDep, index: int = Path(ge=0, le=1023)) -> GpuOut:
    snap = resources.sampler.latest
    for gpu in snap.gpus:
        if gpu.index == index:
            return _gpu_out(gpu, resources)
    raise NotFoundError(f"no GPU with index {index}: this machine has {len(snap.gpus)} ({snap.mode} mode)")
