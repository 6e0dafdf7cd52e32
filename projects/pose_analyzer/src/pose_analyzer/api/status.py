"""Service status: active streams, the pose backend, the database (no credentials) and uptime."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from sqlalchemy.engine import make_url

from pose_analyzer.storage import Database
from pose_analyzer.streaming.hub import StreamHub
from service_kit.ops import ServiceOps, require_api_key

router = APIRouter(prefix="/api", tags=["status"], dependencies=[Depends(require_api_key)])


class StatusOut(BaseModel):
    service: str
    version: str
    ready: bool
    uptime_s: float
    active_streams: int
    max_streams: int
    backend: dict[str, Any]
    database_scheme: str


def database_scheme(url: str) -> str:
    """The URL's scheme (``sqlite``, ``postgresql+psycopg``): never the host, user or password."""
    return make_url(url).drivername


@router.get("/status", summary="Service status: streams, backend, database kind, uptime")
def status(request: Request) -> StatusOut:
    ops: ServiceOps = request.state.ops
    streams: StreamHub = request.state.streams
    database: Database = request.state.database
    return StatusOut(
        service=ops.service,
        version=ops.build.version,
        ready=ops.ready,
        uptime_s=round(time.time() - ops.started_at, 3),
        active_streams=streams.active,
        max_streams=streams.settings.max_streams,
        backend=dict(ops.details.get("pose_backend", {"chosen": streams.default_backend})),
        database_scheme=database_scheme(database.url),
    )
