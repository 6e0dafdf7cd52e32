"""Swap pools: training processes report their TensorSwapper stats; people read them here."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from gpu_optimizer.resources import ResourcesDep
from gpu_optimizer.swap_pools import POOL_NAME_PATTERN, SwapPoolOut, SwapPoolReport
from service_kit.bodylimit import read_body_limited
from service_kit.errors import NotFoundError
from service_kit.ops import require_api_key

router = APIRouter(prefix="/api/swap-pools", tags=["swap pools"], dependencies=[Depends(require_api_key)])
PoolName = Path(pattern=POOL_NAME_PATTERN, description="letters, digits, '_', '.', '-'; at most 64")


@router.get("", summary="Every swap pool with bytes per tier, swaps in and out, throughput")
def list_pools(resources: ResourcesDep) -> list[SwapPoolOut]:
    return resources.swap_pools.list()


@router.get("/{name}", summary="One swap pool", responses={404: {"description": "never reported"}})
def get_pool(resources: ResourcesDep, name: str = PoolName) -> SwapPoolOut:
    pool = resources.swap_pools.get(name)
    if pool is None:
        raise NotFoundError(f"swap pool {name!r} has not reported")
    return pool


# The body is read by the route (to bound its size before parsing), so its schema is given here.
_REPORT_SCHEMA = SwapPoolReport.model_json_schema(ref_template="#/components/schemas/{model}")
_REPORT_SCHEMA.pop("$defs", None)


@router.put(
    "/{name}",
    summary="Report a pool's current stats (sent by SwapPoolReporter)",
    responses={
        409: {"description": "too many pools (in all, or from this process)"},
        413: {"description": "body over GPUOPT_SWAP_POOL_REPORT_MAX_BYTES"},
    },
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": _REPORT_SCHEMA}}}
    },
)
async def report_pool(request: Request, resources: ResourcesDep, name: str = PoolName) -> SwapPoolOut:
    body = await read_body_limited(request, resources.settings.swap_pool_report_max_bytes)
    try:
        report = SwapPoolReport.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None
    return resources.swap_pools.report(name, report)


@router.delete(
    "/{name}", status_code=204, summary="Forget a pool", responses={404: {"description": "unknown"}}
)
def delete_pool(resources: ResourcesDep, name: str = PoolName) -> Response:
    if not resources.swap_pools.remove(name):
        raise NotFoundError(f"swap pool {name!r} has not reported")
    return Response(status_code=204)
