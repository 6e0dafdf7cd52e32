"""Swap pools: training processes report their TensorSwapper stats; people read them here."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Response

from gpu_optimizer.resources import ResourcesDep
from gpu_optimizer.swap_pools import POOL_NAME_PATTERN, SwapPoolOut, SwapPoolReport
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


@router.put("/{name}", summary="Report a pool's current stats (sent by SwapPoolReporter)")
def report_pool(resources: ResourcesDep, report: SwapPoolReport, name: str = PoolName) -> SwapPoolOut:
    return resources.swap_pools.report(name, report)


@router.delete(
    "/{name}", status_code=204, summary="Forget a pool", responses={404: {"description": "unknown"}}
)
def delete_pool(resources: ResourcesDep, name: str = PoolName) -> Response:
    if not resources.swap_pools.remove(name):
        raise NotFoundError(f"swap pool {name!r} has not reported")
    return Response(status_code=204)
