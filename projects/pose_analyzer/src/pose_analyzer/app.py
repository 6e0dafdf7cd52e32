"""The pose_analyzer application factory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from pose_analyzer.api import analyze, exercises, sessions, status, web
from pose_analyzer.api import streams as streams_api
from pose_analyzer.detection.registry import resolve_backend
from pose_analyzer.image_analysis import ImageAnalyzers
from pose_analyzer.metrics import StreamMetrics
from pose_analyzer.settings import PoseSettings
from pose_analyzer.storage import create_database, mark_interrupted_streams
from pose_analyzer.streaming.hub import StreamHub
from service_kit.buildinfo import build_info
from service_kit.errors import install_error_handlers
from service_kit.ops import OWN_DOCS, ops_router, start_ops

SERVICE = "pose_analyzer"
log = logging.getLogger(SERVICE)


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def create_app(settings: PoseSettings | None = None) -> FastAPI:
    """Build the app; resources are opened in the lifespan, not at import or here."""
    settings = settings or PoseSettings()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        ops = start_ops(SERVICE, "pose-analyzer", __file__, settings)
        build = ops.build
        cuda = settings.device == "cuda" or (settings.device == "auto" and _cuda_available())
        backend, reason = resolve_backend(settings.backend, cuda_available=cuda)
        ops.details["pose_backend"] = {"requested": settings.backend, "chosen": backend, "reason": reason}
        log.info("pose backend chosen", extra={"backend": backend, "reason": reason})
        database = await asyncio.to_thread(create_database, settings.database_url)
        with database.session() as db:
            interrupted = mark_interrupted_streams(db)
        if interrupted:
            log.warning("streams left open by the last run marked interrupted", extra={"count": interrupted})
        metrics = StreamMetrics(ops.registry, settings.metrics_stream_labels)
        streams = StreamHub(
            settings, metrics, default_backend=backend, device="cuda" if cuda else "cpu", database=database
        )
        analyzers = ImageAnalyzers(settings, device="cuda" if cuda else "cpu")
        ops.mark_ready()
        log.info("service started", extra={"version": build.version, "git_commit": build.git_commit})
        try:
            yield {"ops": ops, "streams": streams, "database": database, "analyzers": analyzers}
        finally:
            log.info("service stopping")
            await streams.close()
            await asyncio.to_thread(analyzers.close)
            database.dispose()

    app = FastAPI(
        title="pose_analyzer",
        version=build_info("pose-analyzer", __file__).version,
        lifespan=lifespan,
        **OWN_DOCS,
    )
    install_error_handlers(app)
    app.include_router(ops_router())
    app.include_router(streams_api.router)
    for api in (sessions, exercises, analyze, status, web):
        app.include_router(api.router)
    return app
