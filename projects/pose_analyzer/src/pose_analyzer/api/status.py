"""Service status: active streams, the pose backend, the database (no credentials) and uptime."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlalchemy.engine import make_url

from pose_analyzer.resources import ResourcesDep
from service_kit.ops import require_api_key

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
def status(resources: ResourcesDep) -> StatusOut:
    ops, streams = resources.ops, resources.streams
    return StatusOut(
        service=ops.service,
        version=ops.build.version,
        ready=ops.ready,
        uptime_s=round(time.time() - ops.started_at, 3),
        active_streams=streams.active,
        max_streams=resources.settings.max_streams,
        backend=dict(ops.details.get("pose_backend", {"chosen": resources.backend})),
        database_scheme=database_scheme(resources.database.url),
    )
