"""The pose_analyzer application factory and its lifespan.

The lifespan opens the database, the stream hub and the image analyzers, yields them as one
``PoseResources``, and loads and warms the models in the background: ``/healthz`` answers at
once, ``/readyz`` only once the default backend ran a frame (and again 503 while draining).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI

from pose_analyzer.api import analyze, exercises, rigs, sessions, sessions3d, status, web
from pose_analyzer.api import streams as streams_api
from pose_analyzer.detection.options import DetectorOptions, resolve_device
from pose_analyzer.detection.registry import resolve_backend
from pose_analyzer.image_analysis import ImageAnalyzers
from pose_analyzer.limits import WorkLimit
from pose_analyzer.metrics import StreamMetrics
from pose_analyzer.resources import PoseResources
from pose_analyzer.settings import PoseSettings
from pose_analyzer.shutdown import ShutdownNotice
from pose_analyzer.storage import create_database, mark_interrupted
from pose_analyzer.streaming.hub import StreamHub
from service_kit.buildinfo import build_info
from service_kit.errors import install_error_handlers
from service_kit.ops import OWN_DOCS, ops_router, start_ops
from service_kit.thirdparty import configure_ultralytics

SERVICE = "pose_analyzer"
log = logging.getLogger(SERVICE)


async def warm_up(resources: PoseResources, freeze_gc: bool = False) -> None:
    """Load the default backend's models and run one frame through them, then mark the service ready.

    A failure leaves ``/readyz`` at 503 with a reason (the exception goes to the log only).
    ``freeze_gc`` (the service process, see ``create_app``): once warm, what exists now is moved
    out of the cyclic garbage collector's reach (``gc.freeze``).  The libraries and models
    loaded by then are about 200,000 objects, which every full collection would walk again:
    a pause of 100-250 ms on this kind of machine, holding the GIL, in which no stream gets an
    answer (the frames answered around it made the tail latency with 16 streams).
    """
    ops = resources.ops
    ops.mark_not_ready("loading models")
    try:
        await resources.streams.warm()
        await asyncio.to_thread(resources.analyzers.warm, resources.backend)
    except Exception:
        log.exception("the pose models could not be loaded", extra={"backend": resources.backend})
        ops.mark_not_ready(f"the {resources.backend} models could not be loaded (see the service log)")
    else:
        if freeze_gc:
            gc.collect()  # garbage first, so that only what lives on is frozen
            gc.freeze()
        if not resources.streams.draining:  # a SIGTERM during the warm-up: stay 503
            ops.mark_ready()
        log.info("pose models loaded and warmed", extra={"backend": resources.backend})
    finally:
        resources.warm_up_done.set()


RESTART_REASON = "the service is restarting; reconnect when it is ready again"


def _drain_on(notice: ShutdownNotice, resources: PoseResources, stack: AsyncExitStack) -> None:
    """On ``notice``: /readyz says draining at once, new streams are refused, running ones get
    ``drain_grace_s`` to end, those left are interrupted (1012); then the notice is marked drained
    (the server stops)."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    async def drain() -> None:
        grace = resources.settings.drain_grace_s
        resources.ops.mark_draining()
        log.info("service stopping: draining", extra={"streams": resources.streams.active, "grace_s": grace})
        try:
            cut = await resources.streams.drain(grace, RESTART_REASON)
            log.info("service drained", extra={"interrupted_streams": cut})
        finally:
            notice.mark_drained()

    def start_drain() -> None:
        task = loop.create_task(drain(), name="pose-drain")
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def on_notice() -> None:  # called in the signal handler: only hand over to the loop
        loop.call_soon_threadsafe(start_drain)

    def cancel_drain() -> None:  # the lifespan ended first (a second signal)
        for task in list(tasks):
            task.cancel()

    stack.callback(notice.subscribe(on_notice))
    stack.callback(cancel_drain)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def open_resources(settings: PoseSettings, stack: AsyncExitStack) -> PoseResources:
    """Open what the service needs; each part is registered on ``stack`` as soon as it is open,
    so a failure half-way closes what was opened before it."""
    # Logging is the process's (configured in ``__main__``, or by the embedding program).
    ops = start_ops(SERVICE, "pose-analyzer", __file__, settings, configure_logs=False)
    configure_ultralytics(settings.cache_dir)  # no-op when ``__main__`` did it already
    device = resolve_device(settings.device)
    backend, reason = resolve_backend(settings.backend, cuda_available=device == "cuda")
    ops.details["pose_backend"] = {"requested": settings.backend, "chosen": backend, "reason": reason}
    log.info("pose backend chosen", extra={"backend": backend, "reason": reason})
    database = await asyncio.to_thread(create_database, settings.database_url)
    stack.callback(database.dispose)
    interrupted = None
    if not settings.shared_database:
        with database.session() as db:
            interrupted = mark_interrupted(db)
    if interrupted is not None and (interrupted.streams or interrupted.sessions):
        log.warning(
            "streams and sessions left open by the last run marked interrupted",
            extra={"streams": interrupted.streams, "sessions": interrupted.sessions},
        )
    metrics = StreamMetrics(ops.registry, settings.metrics_stream_labels)
    options = DetectorOptions.from_settings(settings, device)
    streams = StreamHub(settings, metrics, default_backend=backend, options=options)
    stack.push_async_callback(streams.close)
    analyzers = ImageAnalyzers(options)
    stack.push_async_callback(asyncio.to_thread, analyzers.close)
    analyze_limit = WorkLimit(
        settings.analyze_max_running or os.cpu_count() or 1, settings.analyze_max_waiting
    )
    return PoseResources(settings, ops, metrics, database, streams, analyzers, backend, device, analyze_limit)


def create_app(
    settings: PoseSettings | None = None, shutdown: ShutdownNotice | None = None, freeze_gc: bool = False
) -> FastAPI:
    """Build the app; resources are opened in the lifespan, not at import or here.

    ``shutdown``: fired when the process is asked to stop (see ``ShutdownNotice``); without it,
    streams still open when the lifespan ends are recorded as interrupted then.  ``freeze_gc``:
    the process is the service's own (``__main__``): see ``warm_up``.  Off for apps embedded in
    a longer-lived process (tests build many), whose later garbage a freeze would keep.
    """
    settings = settings or PoseSettings()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with AsyncExitStack() as stack:
            resources = await open_resources(settings, stack)
            if shutdown is not None:
                _drain_on(shutdown, resources, stack)
            warming = asyncio.create_task(warm_up(resources, freeze_gc), name="pose-warm-up")
            stack.push_async_callback(_cancel, warming)
            build = resources.ops.build
            log.info("service started", extra={"version": build.version, "git_commit": build.git_commit})
            try:
                yield {"ops": resources.ops, "resources": resources}
            finally:
                resources.ops.mark_draining()
                log.info("service stopping")

    app = FastAPI(
        title="pose_analyzer",
        version=build_info("pose-analyzer", __file__).version,
        lifespan=lifespan,
        **OWN_DOCS,
    )
    install_error_handlers(app)
    app.include_router(ops_router())
    app.include_router(streams_api.router)
    for api in (sessions, sessions3d, exercises, analyze, rigs, status, web):
        app.include_router(api.router)
    return app
