"""Operational endpoints both services expose: /healthz, /readyz, /metrics, /api/status/version.

They also serve the API documentation (/openapi.json, /docs, /redoc) in place of FastAPI's own
routes, so that the documentation, the metrics and the version can ask for the API key:
``ServiceSettings.ops_endpoints_protected`` decides (on by default off loopback).  The probes
/healthz and /readyz stay open for orchestrators.  Apps create FastAPI with
``**OWN_DOCS`` so that FastAPI does not add unprotected copies.

The app's lifespan puts a ``ServiceOps`` into its state under the key ``"ops"``; these
routes read it from there, so they hold no globals and any number of apps can live in
one process (tests do).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, WebSocket
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from service_kit.buildinfo import BuildInfo, build_info
from service_kit.errors import InvalidInputError, UnauthorizedError, error_body
from service_kit.hardware import host_hardware
from service_kit.jsonlog import configure_logging
from service_kit.settings import ServiceSettings, config_digest


@dataclass(slots=True)
class ServiceOps:
    """Identity, readiness and metrics registry of one running service."""

    service: str
    build: BuildInfo
    config_digest: str
    registry: CollectorRegistry
    api_key: str | None = None
    protect_ops: bool = False
    started_at: float = field(default_factory=time.time)
    ready: bool = False
    not_ready_reason: str = "starting"
    # Stopping: running work finishes, new work goes elsewhere (see /readyz's draining_status).
    draining: bool = False
    details: dict[str, Any] = field(default_factory=dict)
    details_provider: Callable[[], dict[str, Any]] | None = None

    def mark_ready(self) -> None:
        self.ready, self.not_ready_reason = True, ""

    def mark_not_ready(self, reason: str) -> None:
        self.ready, self.not_ready_reason = False, reason

    def mark_draining(self) -> None:
        """Not ready for good: the service is stopping and lets running work finish."""
        self.mark_not_ready("draining")
        self.draining = True


def new_registry(service: str, build: BuildInfo) -> CollectorRegistry:
    """A registry of the service's own (not the process-global one) with process and build metrics."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    info = Gauge(
        "aiml_build_info",
        "Build of the running service (value is always 1)",
        ["service", "version", "git_commit"],
        registry=registry,
    )
    info.labels(service, build.version, build.git_commit).set(1)
    return registry


def get_ops(request: Request) -> ServiceOps:
    ops: ServiceOps = request.state.ops
    return ops


OpsDep = Annotated[ServiceOps, Depends(get_ops)]


def _key_matches(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def presented_key(headers: Any, query: Any) -> str | None:
    """The API key a client sent: ``X-API-Key``, ``Authorization: Bearer``, or ``?api_key=``.

    The query parameter exists for browsers, whose WebSocket API cannot set headers.
    """
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return str(auth[7:])
    key = headers.get("x-api-key") or query.get("api_key")
    return None if key is None else str(key)


def require_api_key(request: Request) -> None:
    """Dependency for REST routes: 401 when the service has an API key and the request lacks it."""
    ops = get_ops(request)
    if ops.api_key and not _key_matches(ops.api_key, presented_key(request.headers, request.query_params)):
        raise UnauthorizedError("missing or wrong API key (send X-API-Key or Authorization: Bearer)")


def require_ops_key(request: Request) -> None:
    """Dependency for /metrics, the docs and the version: the key is asked when ``protect_ops`` is on."""
    if get_ops(request).protect_ops:
        require_api_key(request)


# FastAPI(**OWN_DOCS): the docs are served by ops_router, behind require_ops_key.
OWN_DOCS: dict[str, Any] = {"docs_url": None, "redoc_url": None, "openapi_url": None}


def websocket_authorised(websocket: WebSocket) -> bool:
    ops: ServiceOps = websocket.state.ops
    return not ops.api_key or _key_matches(
        ops.api_key, presented_key(websocket.headers, websocket.query_params)
    )


def ops_router() -> APIRouter:
    router = APIRouter(tags=["ops"])

    @router.get("/healthz", summary="The process is alive")
    def healthz(ops: OpsDep) -> dict[str, Any]:
        return {"status": "ok", "service": ops.service, "uptime_s": round(time.time() - ops.started_at, 3)}

    @router.get(
        "/readyz", summary="Models and database are ready", responses={503: {"description": "not ready"}}
    )
    def readyz(ops: OpsDep, draining_status: int = 503) -> Response:
        """200 when ready, else 503 with the reason.  ``draining_status=404`` is for HAProxy's
        ``http-check disable-on-404``: a draining service then answers 404, which takes it out of
        load balancing but keeps its established connections (streams finish), where a 503
        marks it down and ``on-marked-down shutdown-sessions`` would cut them."""
        if draining_status not in (404, 503):
            raise InvalidInputError("draining_status must be 404 or 503", code="invalid_draining_status")
        if ops.ready:
            return JSONResponse({"status": "ready", "service": ops.service})
        status = draining_status if ops.draining else 503
        return JSONResponse(error_body("not_ready", ops.not_ready_reason), status_code=status)

    guarded = [Depends(require_ops_key)]

    @router.get("/openapi.json", include_in_schema=False, dependencies=guarded)
    def openapi(request: Request) -> JSONResponse:
        return JSONResponse(request.app.openapi())

    @router.get("/docs", include_in_schema=False, dependencies=guarded)
    def swagger(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{request.app.title} - Swagger UI")

    @router.get("/redoc", include_in_schema=False, dependencies=guarded)
    def redoc(request: Request) -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{request.app.title} - ReDoc")

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response, dependencies=guarded)
    def metrics(ops: OpsDep) -> Response:
        return Response(generate_latest(ops.registry), media_type=CONTENT_TYPE_LATEST)

    @router.get(
        "/api/status/version",
        summary="Version, commit, config digest and host hardware",
        dependencies=guarded,
    )
    def version(ops: OpsDep) -> dict[str, Any]:
        details = dict(ops.details)
        if ops.details_provider is not None:
            details.update(ops.details_provider())
        return {
            "service": ops.service,
            **ops.build.to_dict(),
            "config_digest": ops.config_digest,
            "started_at": ops.started_at,
            "hardware": host_hardware().to_dict(),
            **details,
        }

    return router


def start_ops(
    service: str,
    distribution: str,
    source_file: str,
    settings: ServiceSettings,
    configure_logs: bool = True,
) -> ServiceOps:
    """What every lifespan does first: build info, metrics registry, and (``configure_logs``) JSON
    logging with the config digest; a service whose ``__main__`` configures logging passes False."""
    digest = config_digest(settings)
    if configure_logs:
        configure_logging(service, settings.log_level, settings.log_dir, digest)
    build = build_info(distribution, source_file)
    return ServiceOps(
        service=service,
        build=build,
        config_digest=digest,
        registry=new_registry(service, build),
        api_key=settings.api_key.get_secret_value() if settings.api_key else None,
        protect_ops=settings.ops_endpoints_protected,
    )
