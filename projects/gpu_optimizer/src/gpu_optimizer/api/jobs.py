"""GET /api/jobs and /api/jobs/{id}: background jobs with progress, result or error."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel

from gpu_optimizer.jobs.store import JobRecord
from gpu_optimizer.resources import ResourcesDep
from service_kit.errors import NotFoundError
from service_kit.ops import require_api_key

router = APIRouter(prefix="/api/jobs", tags=["jobs"], dependencies=[Depends(require_api_key)])

JobState = Literal["queued", "running", "succeeded", "failed"]


class JobOut(BaseModel):
    id: str
    kind: str
    state: JobState
    params: dict[str, Any]
    progress: float
    message: str
    result: dict[str, Any] | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, record: JobRecord) -> JobOut:
        return cls.model_validate(record, from_attributes=True)


@router.get("", summary="Recent jobs, newest first")
def list_jobs(
    resources: ResourcesDep, state: JobState | None = None, limit: int = Query(default=50, ge=1, le=1000)
) -> list[JobOut]:
    return [JobOut.of(r) for r in resources.jobs.store.list(limit=limit, state=state)]


@router.get("/{job_id}", summary="One job", responses={404: {"description": "no such job"}})
def get_job(resources: ResourcesDep, job_id: str = Path(min_length=1, max_length=64)) -> JobOut:
    record = resources.jobs.store.get(job_id)
    if record is None:
        raise NotFoundError(f"no job {job_id!r}")
    return JobOut.of(record)
