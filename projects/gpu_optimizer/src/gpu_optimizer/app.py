"""The gpu_optimizer application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from gpu_optimizer.api import checkpoints, gpus, jobs, profile, runs, swap_pools
from gpu_optimizer.checkpoints.catalog import CheckpointCatalog
from gpu_optimizer.devices.health import HealthThresholds
from gpu_optimizer.devices.metrics import GpuCollector
from gpu_optimizer.devices.sampler import GpuSampler
from gpu_optimizer.jobs import JobRunner, JobStore
from gpu_optimizer.resources import GpuOptResources
from gpu_optimizer.service_metrics import CheckpointCollector, ServiceMetrics
from gpu_optimizer.settings import GpuOptSettings
from gpu_optimizer.swap_pools import SwapPoolCollector, SwapPoolRegistry
from gpu_optimizer.training.registry import RunCollector, RunStore
from service_kit.buildinfo import build_info
from service_kit.errors import install_error_handlers
from service_kit.hardware import host_hardware
from service_kit.ops import OWN_DOCS, ops_router, start_ops

SERVICE = "gpu_optimizer"
log = logging.getLogger(SERVICE)


def create_app(settings: GpuOptSettings | None = None) -> FastAPI:
    """Build the app; resources are opened in the lifespan, not at import or here."""
    settings = settings or GpuOptSettings()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        ops = start_ops(SERVICE, "gpu-optimizer", __file__, settings)
        build = ops.build
        thresholds = HealthThresholds(
            temperature_warning_celsius=settings.temperature_warning_celsius,
            temperature_critical_celsius=settings.temperature_critical_celsius,
            memory_warning_ratio=settings.memory_warning_ratio,
            memory_critical_ratio=settings.memory_critical_ratio,
        )
        sampler = GpuSampler(settings.sample_interval_s)
        sampler.sample_once()
        sampler.start()
        ops.registry.register(GpuCollector(sampler, thresholds))
        metrics = ServiceMetrics.create(ops.registry)
        store = JobStore(settings.database_url)
        stale = store.fail_unfinished("the service stopped before the job finished")
        runner = JobRunner(
            store,
            workers=settings.job_workers,
            max_queued=settings.job_queue_size,
            on_state=lambda kind, state: metrics.jobs.labels(kind, state).inc(),
        )
        catalog = CheckpointCatalog(settings.checkpoint_root)
        ops.registry.register(CheckpointCollector(catalog))
        pools = SwapPoolRegistry(
            stale_after_s=settings.swap_pool_stale_after_s,
            max_pools=settings.swap_pools_max,
            max_pools_per_process=settings.swap_pools_per_process,
        )
        ops.registry.register(SwapPoolCollector(pools))
        run_store = RunStore(settings.database_url)
        ops.registry.register(RunCollector(run_store))
        resources = GpuOptResources(
            settings=settings,
            sampler=sampler,
            thresholds=thresholds,
            jobs=runner,
            swap_pools=pools,
            checkpoints=catalog,
            metrics=metrics,
            runs=run_store,
        )
        ops.details_provider = lambda: {"mode": sampler.latest.mode}
        ops.mark_ready()
        log.info(
            "service started",
            extra={
                "version": build.version,
                "mode": sampler.latest.mode,
                "gpus": len(host_hardware().gpus),
                "stale_jobs_failed": stale,
            },
        )
        try:
            yield {"ops": ops, "resources": resources}
        finally:
            runner.shutdown()
            store.close()
            run_store.close()
            sampler.stop()
            log.info("service stopping")

    app = FastAPI(
        title="gpu_optimizer",
        version=build_info("gpu-optimizer", __file__).version,
        lifespan=lifespan,
        **OWN_DOCS,
    )
    install_error_handlers(app)
    app.include_router(ops_router())
    app.include_router(gpus.router)
    app.include_router(jobs.router)
    app.include_router(swap_pools.router)
    app.include_router(checkpoints.router)
    app.include_router(profile.router)
    app.include_router(runs.router)
    return app
