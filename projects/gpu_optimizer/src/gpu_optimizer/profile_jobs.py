"""Profiling as a background job: resolve the model safely, profile, optionally search the batch size."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, cast

import torch

from gpu_optimizer.jobs.runner import JobContext, JobFailure
from gpu_optimizer.profiling.models import MODELS, ModelSpec
from gpu_optimizer.profiling.runs import GIB, profile, search_batch, verdict
from gpu_optimizer.profiling.setup import DTYPE_PRECISIONS, TrainingSetup


def allowed_import_spec(path: str, allowed: list[str], input_shape: list[int] | None) -> ModelSpec:
    """A spec for ``module:factory`` if (and only if) the settings allow-list names it.

    Raises ValueError otherwise: a request never chooses code to import.
    """
    if path not in allowed:
        raise ValueError(
            f"unknown model {path!r}: use a registered name (GET /api/profile/models) or an import path "
            "listed in GPUOPT_PROFILE_ALLOWED_IMPORTS"
        )
    if not input_shape:
        raise ValueError(f"{path} is an import path: input_shape is required")
    module_name, _, attr = path.partition(":")
    factory = cast(Callable[[], torch.nn.Module], getattr(importlib.import_module(module_name), attr))
    return ModelSpec(path, "custom", f"allow-listed factory {path}", factory, tuple(input_shape))


def training_setup(params: dict[str, Any]) -> TrainingSetup:
    """The TrainingSetup of validated request parameters (precision overrides dtype).

    Raises ValueError for an inconsistent setup (sharding without ranks, ...).
    """
    return TrainingSetup(
        precision=params.get("precision") or DTYPE_PRECISIONS[params.get("dtype", "float32")],
        keep_output=params.get("keep_output", False),
        accumulation_steps=params.get("accumulation_steps", 1),
        checkpoint_blocks=tuple(params.get("checkpoint_blocks") or ()),
        sharding=params.get("sharding", "none"),
        world_size=params.get("world_size", 1),
        offload_optimizer=params.get("offload_optimizer", False),
        optimizer_impl=params.get("optimizer_impl"),
    )


def resolve_spec(model: str, allowed: list[str], input_shape: list[int] | None) -> ModelSpec:
    if model in MODELS:
        return MODELS[model]
    return allowed_import_spec(model, allowed, input_shape)


def make_profile_job(
    allowed: list[str], on_oom: Callable[[str], None] = lambda source: None
) -> Callable[[dict[str, Any], JobContext], dict[str, Any]]:
    """The job function for ``POST /api/profile`` parameters (already validated by the API).

    ``on_oom(source)`` is called for every CUDA out-of-memory error met: the job's own, and each
    batch size the CUDA batch search found not to fit.
    """

    def run(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        if params["device"] == "cuda" and not torch.cuda.is_available():
            raise JobFailure("device 'cuda' was asked for, but CUDA is not available on this machine")
        try:
            return _run(params, ctx)
        except torch.OutOfMemoryError as exc:
            on_oom("profile_job")
            raise JobFailure(
                f"out of GPU memory profiling {params['model']} at batch size {params['batch_size']}"
            ) from exc

    def _run(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        spec = resolve_spec(params["model"], allowed, params.get("input_shape"))
        ctx.progress(0.1, f"profiling {spec.name}")
        setup = training_setup(params)
        plain = setup == TrainingSetup(setup.precision) and params.get("gpu") is None
        report = profile(
            spec,
            params.get("input_shape"),
            batch_size=params["batch_size"],
            dtype=params["dtype"],
            optimizer=params["optimizer"],
            device=params["device"],
            recommendations=params["recommendations"],
            setup=None if plain else setup,
            gpu=params.get("gpu"),
        )
        result: dict[str, Any] = {"report": report.to_dict()}
        if params.get("gpu") is not None:
            ctx.progress(0.4, f"verdict on {params['gpu']}")
            answer = verdict(
                spec,
                params["gpu"],
                params.get("input_shape"),
                batch_size=params["batch_size"],
                setup=setup,
                optimizer=params["optimizer"],
                gpus=params.get("gpus", 1),
            )
            result["verdict"] = answer.to_dict()
        search = params.get("find_batch")
        if search:
            ctx.progress(0.6, "searching the largest batch that fits")
            budget = search.get("budget_gb")
            found = search_batch(
                spec,
                params.get("input_shape"),
                budget_bytes=None if budget is None else int(budget * GIB),
                dtype=params["dtype"],
                optimizer=params["optimizer"],
                device=params["device"],
                margin=search["margin"],
                limit=search["limit"],
            )
            result["batch_search"] = found.to_dict()
            if params["device"] == "cuda":
                for _ in (size for size, fits in found.probes if not fits):
                    on_oom("batch_search")
        return result

    return run
