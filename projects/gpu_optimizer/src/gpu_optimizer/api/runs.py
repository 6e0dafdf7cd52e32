"""Training runs: trainers PUT their progress; people and dashboards read it here."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query

from gpu_optimizer.resources import ResourcesDep
from gpu_optimizer.training.registry import RUN_NAME_PATTERN, RunOut, RunReport, RunStatus
from service_kit.errors import NotFoundError
from service_kit.ops import require_api_key

router = APIRouter(prefix="/api/runs", tags=["training runs"], dependencies=[Depends(require_api_key)])
RunName = Path(pattern=RUN_NAME_PATTERN, description="letters, digits, '_', '.', '-'; at most 64")


@router.get("", summary="Training runs, most recently updated first")
def list_runs(
    resources: ResourcesDep, status: RunStatus | None = None, limit: int = Query(default=50, ge=1, le=1000)
) -> list[RunOut]:
    return resources.runs.list(limit=limit, status=status)


@router.get("/{name}", summary="One training run", responses={404: {"description": "never reported"}})
def get_run(resources: ResourcesDep, name: str = RunName) -> RunOut:
    run = resources.runs.get(name)
    if run is None:
        raise NotFoundError(f"training run {name!r} has not reported")
    return run


@router.put("/{name}", summary="Report a run's progress (sent by the training kit)")
def report_run(resources: ResourcesDep, report: RunReport, name: str = RunName) -> RunOut:
    return resources.runs.report(name, report)
