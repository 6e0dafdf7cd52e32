"""Checkpoints under the configured root: list, verify, delete, prune by a retention policy.

Nothing below the root is followed through a symbolic link: a linked run is not listed, a linked
checkpoint is listed as invalid, and verify, delete and prune refuse it with 409 ``unsafe_path``.
A checkpoint whose manifest is invalid is listed under ``invalid`` with the reason while the rest
of the listing goes on.
"""

from __future__ import annotations

import time
from typing import Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, Field, model_validator

from gpu_optimizer.checkpoints import (
    CheckpointCorruptError,
    CheckpointError,
    CheckpointInfo,
    CheckpointNotFoundError,
    InvalidCheckpointNameError,
    UnsafePathError,
)
from gpu_optimizer.checkpoints.catalog import CheckpointCatalog
from gpu_optimizer.checkpoints.manifest_schema import finite_or_none
from gpu_optimizer.resources import ResourcesDep
from service_kit.errors import ConflictError, NotFoundError, ServiceError
from service_kit.ops import require_api_key

router = APIRouter(prefix="/api/checkpoints", tags=["checkpoints"], dependencies=[Depends(require_api_key)])
NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
RunName = Path(pattern=NAME, description="a run directory under the checkpoint root")
CheckpointName = Path(pattern=NAME, description="a checkpoint directory inside the run")


class CheckpointOut(BaseModel):
    name: str
    step: int
    epoch: int | None
    metrics: dict[str, float | None] = Field(description="null for NaN or infinite values")
    created_at: str
    kind: str
    size_bytes: int
    files: int
    hash: str = Field(description="hash of every file in the manifest: blake3, or sha256 (format 1)")
    config_digest: str | None
    verified: bool | None = Field(description="null until verified; hashes are checked on request")


class InvalidCheckpointOut(BaseModel):
    name: str
    error: str = Field(description="why it is not a valid checkpoint (manifest missing or invalid, a link)")


class RunOut(BaseModel):
    run: str
    checkpoints: list[CheckpointOut]
    invalid: list[InvalidCheckpointOut] = Field(description="directories that are not valid checkpoints")
    size_bytes: int


class VerifyOut(BaseModel):
    run: str
    name: str
    ok: bool
    mismatched: list[str]
    missing: list[str]
    error: str | None


class PruneIn(BaseModel):
    keep_last: int | None = Field(default=3, ge=0, le=100_000)
    keep_best: int = Field(default=0, ge=0, le=100_000)
    best_metric: str | None = Field(default=None, min_length=1, max_length=128)
    mode: Literal["min", "max"] = "min"

    @model_validator(mode="after")
    def _consistent(self) -> PruneIn:
        if self.keep_best and not self.best_metric:
            raise ValueError("keep_best needs best_metric")
        if self.keep_last is not None and self.keep_last + self.keep_best == 0:
            raise ValueError("keep_last + keep_best must be >= 1 (keep_last=null keeps every checkpoint)")
        return self


class PruneOut(BaseModel):
    run: str
    removed: list[str]
    kept: list[str]


class BadNameError(ServiceError):
    status_code = 422
    code = "invalid_name"


class UnsafePathHTTPError(ServiceError):
    status_code = 409
    code = "unsafe_path"


def _catalog(resources: ResourcesDep) -> CheckpointCatalog:
    return resources.checkpoints


CatalogDep = Depends(_catalog)


def _out(info: CheckpointInfo, verified: bool | None) -> CheckpointOut:
    return CheckpointOut(
        name=info.name,
        step=info.step,
        epoch=info.epoch,
        metrics={k: finite_or_none(v) for k, v in info.metrics.items()},
        created_at=info.created_at,
        kind=info.kind,
        size_bytes=info.size_bytes,
        files=len(info.files),
        hash=info.hash_algorithm,
        config_digest=info.config_digest,
        verified=verified,
    )


def _run_out(catalog: CheckpointCatalog, run: str, verify: bool) -> RunOut:
    scan = catalog.scan(run)
    outs = []
    invalid = dict(scan.invalid)
    for info in scan.valid:
        if not verify:
            outs.append(_out(info, None))
            continue
        try:
            outs.append(_out(info, catalog.verify(run, info.name).ok))
        except CheckpointError as exc:  # removed or replaced since the scan
            invalid[info.name] = str(exc)
    return RunOut(
        run=run,
        checkpoints=outs,
        invalid=[InvalidCheckpointOut(name=n, error=e) for n, e in sorted(invalid.items())],
        size_bytes=sum(o.size_bytes for o in outs),
    )


def _translate(exc: Exception) -> ServiceError:
    if isinstance(exc, CheckpointNotFoundError):
        return NotFoundError(str(exc))
    if isinstance(exc, InvalidCheckpointNameError):
        return BadNameError(str(exc))
    if isinstance(exc, UnsafePathError):
        return UnsafePathHTTPError(str(exc))
    return ConflictError(str(exc))


_REFUSED = (CheckpointNotFoundError, InvalidCheckpointNameError, UnsafePathError)


@router.get("", summary="Every run with its checkpoints (step, metrics, size; hashes with ?verify=true)")
def list_runs(catalog: CheckpointCatalog = CatalogDep, verify: bool = Query(default=False)) -> list[RunOut]:
    runs = []
    for run in catalog.runs():
        try:
            runs.append(_run_out(catalog, run, verify))
        except _REFUSED:  # removed, or replaced by a link, since it was listed
            continue
    return runs


@router.get("/{run}", summary="One run", responses={404: {"description": "no such run"}})
def get_run(catalog: CheckpointCatalog = CatalogDep, run: str = RunName, verify: bool = False) -> RunOut:
    try:
        return _run_out(catalog, run, verify)
    except _REFUSED as exc:
        raise _translate(exc) from exc


@router.post(
    "/{run}/{name}/verify",
    summary="Check every file against the hash in the manifest",
    responses={404: {"description": "no such checkpoint"}, 409: {"description": "a symbolic link"}},
)
def verify_checkpoint(resources: ResourcesDep, run: str = RunName, name: str = CheckpointName) -> VerifyOut:
    catalog = resources.checkpoints
    started = time.perf_counter()
    try:
        catalog.run_dir(run)
        result = catalog.verify(run, name)
        verified_bytes = catalog.info(run, name).size_bytes if result.ok else 0
    except _REFUSED as exc:
        raise _translate(exc) from exc
    except CheckpointCorruptError as exc:  # its manifest changed since it verified
        raise ConflictError(str(exc)) from exc
    resources.metrics.checkpoint_verify_seconds.observe(time.perf_counter() - started)
    resources.metrics.checkpoint_verified_bytes.inc(verified_bytes)
    return VerifyOut(
        run=run,
        name=result.name,
        ok=result.ok,
        mismatched=result.mismatched,
        missing=result.missing,
        error=result.error,
    )


@router.delete(
    "/{run}/{name}",
    status_code=204,
    summary="Delete a checkpoint",
    responses={
        404: {"description": "no such checkpoint"},
        409: {"description": "no valid manifest (use force), or a symbolic link (never deleted through)"},
    },
)
def delete_checkpoint(
    catalog: CheckpointCatalog = CatalogDep,
    run: str = RunName,
    name: str = CheckpointName,
    force: bool = Query(default=False, description="also remove a directory without manifest"),
) -> Response:
    try:
        catalog.delete(run, name, force=force)
    except CheckpointCorruptError as exc:
        raise ConflictError(f"{exc}; it may be a save in progress (use ?force=true to remove it)") from exc
    except _REFUSED as exc:
        raise _translate(exc) from exc
    return Response(status_code=204)


@router.post(
    "/{run}/prune",
    summary="Apply a retention policy: keep the last N and the best K by a metric",
    responses={404: {"description": "no such run"}, 409: {"description": "a symbolic link"}},
)
def prune_run(policy: PruneIn, catalog: CheckpointCatalog = CatalogDep, run: str = RunName) -> PruneOut:
    try:
        removed = catalog.prune(run, policy.keep_last, policy.keep_best, policy.best_metric, policy.mode)
        kept = [i.name for i in catalog.list(run)]
    except _REFUSED as exc:
        raise _translate(exc) from exc
    return PruneOut(run=run, removed=removed, kept=kept)
