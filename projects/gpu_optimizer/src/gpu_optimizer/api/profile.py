"""POST /api/profile: a memory profile of a known architecture as a background job."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field, model_validator
from starlette.exceptions import HTTPException

from gpu_optimizer.api.jobs import JobOut
from gpu_optimizer.jobs import QueueFullError
from gpu_optimizer.profile_jobs import make_profile_job, resolve_spec, training_setup
from gpu_optimizer.profiling.gpus import resolve_gpu
from gpu_optimizer.profiling.models import MODELS
from gpu_optimizer.profiling.setup import TrainingSetup
from gpu_optimizer.resources import ResourcesDep
from service_kit.errors import ServiceError
from service_kit.ops import require_api_key

router = APIRouter(prefix="/api/profile", tags=["profiling"], dependencies=[Depends(require_api_key)])


class BatchSearchIn(BaseModel):
    budget_gb: float | None = Field(default=None, gt=0, le=100_000, description="needed unless device=cuda")
    margin: float = Field(default=0.1, ge=0, lt=0.9)
    limit: int = Field(default=4096, ge=1, le=65_536)


class ProfileIn(BaseModel):
    model: str = Field(
        min_length=1, max_length=200, description="a registered name, or an allow-listed import path"
    )
    input_shape: list[int] | None = Field(
        default=None, min_length=1, max_length=4, description="input shape without the batch dimension"
    )
    batch_size: int = Field(default=8, ge=1, le=65_536)
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    optimizer: Literal["adamw", "adam", "sgd", "sgd_momentum", "adagrad", "rmsprop"] = "adamw"
    device: Literal["meta", "cpu", "cuda"] = "meta"
    recommendations: bool = True
    find_batch: BatchSearchIn | None = None
    gpu: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="target GPU name or memory in GB: adds a verdict",
    )
    gpus: int = Field(default=1, ge=1, le=4096, description="GPUs at hand; sharding is tried above 1")
    precision: Literal["fp32", "bf16", "fp16", "amp-bf16", "amp-fp16"] | None = Field(
        default=None, description="overrides dtype; amp-*: fp32 master weights under autocast"
    )
    keep_output: bool = False
    accumulation_steps: int = Field(default=1, ge=1, le=65_536)
    checkpoint_blocks: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=1024
    )
    sharding: Literal["none", "ddp", "zero1", "zero2", "zero3", "fsdp"] = "none"
    world_size: int = Field(default=1, ge=1, le=4096)
    offload_optimizer: bool = False
    optimizer_impl: Literal["single", "foreach", "fused"] | None = None

    @model_validator(mode="after")
    def _shape(self) -> ProfileIn:
        if self.input_shape is not None and any(d < 1 or d > 100_000 for d in self.input_shape):
            raise ValueError("input_shape dimensions must be between 1 and 100000")
        if self.find_batch and self.device != "cuda" and self.find_batch.budget_gb is None:
            raise ValueError("find_batch.budget_gb is required unless device is cuda")
        setup = training_setup(self.model_dump())
        setup.micro_batch(self.batch_size)
        if self.gpu is not None:
            resolve_gpu(self.gpu)
        if self.device == "cuda" and (self.gpu is not None or setup != TrainingSetup(setup.precision)):
            raise ValueError("gpu and training-setup options are estimates: use device meta or cpu")
        return self


class ModelOut(BaseModel):
    name: str
    family: str
    description: str
    input_shape: list[int]


class BadProfileRequestError(ServiceError):
    status_code = 422
    code = "invalid_profile_request"


@router.get("/models", summary="Architectures that can be profiled by name")
def list_models() -> list[ModelOut]:
    return [
        ModelOut(name=s.name, family=s.family, description=s.description, input_shape=list(s.input_shape))
        for s in MODELS.values()
    ]


@router.post(
    "",
    status_code=202,
    summary="Start a profiling job; poll GET /api/jobs/{id}",
    responses={429: {"description": "the job queue is full; retry after Retry-After seconds"}},
)
def start_profile(request: ProfileIn, resources: ResourcesDep) -> JobOut:
    allowed = resources.settings.profile_allowed_imports
    try:
        spec = resolve_spec(request.model, allowed, request.input_shape)
        if request.input_shape is not None and len(request.input_shape) != len(spec.input_shape):
            raise ValueError(
                f"{spec.name} takes {len(spec.input_shape)}-dimensional inputs without batch "
                f"(default {list(spec.input_shape)})"
            )
    except ValueError as exc:
        raise BadProfileRequestError(str(exc)) from exc
    ooms = resources.metrics.oom_events
    job = make_profile_job(allowed, on_oom=lambda source: ooms.labels(source).inc())
    try:
        record = resources.jobs.submit("profile", request.model_dump(), job)
    except QueueFullError as exc:
        # An HTTPException because the shared handler passes its headers on (Retry-After).
        raise HTTPException(
            429,
            f"the profiling queue is full ({exc.max_queued} jobs waiting); retry in {exc.retry_after_s} s",
            headers={"Retry-After": str(exc.retry_after_s)},
        ) from None
    return JobOut.of(record)
