"""What the pose_analyzer lifespan opens, kept in one typed object and reached through dependencies.

Routes never read ``request.state`` themselves: they name ``ResourcesDep`` (or one of the
narrower aliases below) and FastAPI hands them the object the lifespan yielded.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request, WebSocket

from pose_analyzer.image_analysis import ImageAnalyzers
from pose_analyzer.limits import WorkLimit
from pose_analyzer.metrics import StreamMetrics
from pose_analyzer.settings import PoseSettings
from pose_analyzer.storage import Database
from pose_analyzer.streaming.hub import StreamHub
from service_kit.ops import ServiceOps


@dataclass(slots=True)
class PoseResources:
    """Everything a request may use, opened by the lifespan and closed by it in reverse order.

    ``backend`` is the concrete default backend ("auto" resolved at start-up) and ``device``
    "cpu" or "cuda".
    """

    settings: PoseSettings
    ops: ServiceOps
    metrics: StreamMetrics
    database: Database
    streams: StreamHub
    analyzers: ImageAnalyzers
    backend: str
    device: str
    # Bounds POST /api/analyze (built from the settings in ``app.open_resources``).
    analyze_limit: WorkLimit
    # Set once the start-up warm-up ended, loaded or failed (``ops.ready`` tells which).
    warm_up_done: asyncio.Event = field(default_factory=asyncio.Event)


def get_resources(request: Request) -> PoseResources:
    resources: PoseResources = request.state.resources
    return resources


def get_ws_resources(websocket: WebSocket) -> PoseResources:
    resources: PoseResources = websocket.state.resources
    return resources


def get_database(request: Request) -> Database:
    return get_resources(request).database


ResourcesDep = Annotated[PoseResources, Depends(get_resources)]
WsResourcesDep = Annotated[PoseResources, Depends(get_ws_resources)]
DatabaseDep = Annotated[Database, Depends(get_database)]
