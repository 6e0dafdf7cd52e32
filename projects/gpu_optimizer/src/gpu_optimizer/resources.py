"""What the gpu_optimizer lifespan opens, kept in one typed object in the app state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from gpu_optimizer.checkpoints.catalog import CheckpointCatalog
from gpu_optimizer.devices.health import HealthThresholds
from gpu_optimizer.devices.sampler import GpuSampler
from gpu_optimizer.jobs.runner import JobRunner
from gpu_optimizer.service_metrics import ServiceMetrics
from gpu_optimizer.settings import GpuOptSettings
from gpu_optimizer.swap_pools import SwapPoolRegistry
from gpu_optimizer.training.registry import RunStore


@dataclass(slots=True)
class GpuOptResources:
    settings: GpuOptSettings
    sampler: GpuSampler
    thresholds: HealthThresholds
    jobs: JobRunner
    swap_pools: SwapPoolRegistry
    checkpoints: CheckpointCatalog
    metrics: ServiceMetrics
    runs: RunStore


def get_resources(request: Request) -> GpuOptResources:
    resources: GpuOptResources = request.state.resources
    return resources


ResourcesDep = Annotated[GpuOptResources, Depends(get_resources)]
