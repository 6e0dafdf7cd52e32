"""One profiling run or batch-size search from plain arguments: what the CLI and the service share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import torch

from gpu_optimizer.profiling.batch_size import (
    BatchSearch,
    CudaStepProbe,
    NoBatchFitsError,
    estimator_probe,
    find_max_batch,
    find_max_batch_cuda,
)
from gpu_optimizer.profiling.estimator import estimate
from gpu_optimizer.profiling.gpus import resolve_gpu
from gpu_optimizer.profiling.measure import measure_cuda
from gpu_optimizer.profiling.models import ModelSpec, model_source
from gpu_optimizer.profiling.recommend import recommend, with_recommendations
from gpu_optimizer.profiling.report import MemoryReport
from gpu_optimizer.profiling.setup import DTYPE_PRECISIONS, TrainingSetup, assumptions
from gpu_optimizer.profiling.verdict import Verdict, gpu_verdict

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
DeviceName = Literal["cpu", "cuda", "meta"]
GIB = 1024**3


def input_shape_for(spec: ModelSpec, shape: Sequence[int] | None) -> tuple[int, ...]:
    """The input shape to use (without batch): the given one, else the architecture's default."""
    if shape is None:
        return spec.input_shape
    dims = tuple(int(d) for d in shape)
    if not dims or any(d < 1 for d in dims):
        raise ValueError(f"input shape dimensions must be positive integers, got {tuple(shape)}")
    if len(dims) != len(spec.input_shape):
        raise ValueError(
            f"{spec.name} takes inputs of {len(spec.input_shape)} dimensions without batch "
            f"(default {spec.input_shape}), got {dims}"
        )
    return dims


def dtype_of(name: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; valid: {', '.join(DTYPES)}") from None


def profile(
    spec: ModelSpec,
    shape: Sequence[int] | None = None,
    *,
    batch_size: int = 8,
    dtype: str = "float32",
    optimizer: str = "adamw",
    device: DeviceName = "meta",
    recommendations: bool = True,
    snapshot: Path | None = None,
    setup: TrainingSetup | None = None,
    gpu: str | None = None,
) -> MemoryReport:
    """Memory of one training step: estimated without allocating (cpu/meta) or measured (cuda).

    With `setup` (precision, accumulation, sharding, ...) the estimate prices that setup and
    `dtype` is ignored; with `gpu` (a table name or GB) it is priced as CUDA runs it (the
    optimizer's CUDA default implementation, caching-allocator rounding). Raises ValueError for
    bad arguments, EstimationError when the model cannot be traced, and CudaUnavailableError
    when ``device="cuda"`` on a machine without CUDA.
    """
    if setup is not None or gpu is not None:
        return _profile_setup(
            spec,
            shape,
            batch_size,
            setup or TrainingSetup(DTYPE_PRECISIONS[dtype]),
            optimizer,
            gpu,
            recommendations,
        )
    kwargs: dict[str, Any] = {
        "input_shape": input_shape_for(spec, shape),
        "dtype": dtype_of(dtype),
        "optimizer": optimizer,
        "input_dtype": spec.input_dtype,
        "loss_fn": spec.loss_fn,
    }
    if device == "cuda":
        return measure_cuda(
            spec.build, batch_size=batch_size, snapshot_path=snapshot, name=spec.name, **kwargs
        )
    source = model_source(spec)
    report = estimate(source, batch_size=batch_size, name=spec.name, **kwargs)
    if recommendations:
        report = with_recommendations(report, recommend(source, report, **kwargs))
    return report


def _profile_setup(
    spec: ModelSpec,
    shape: Sequence[int] | None,
    batch_size: int,
    setup: TrainingSetup,
    optimizer: str,
    gpu: str | None,
    recommendations: bool,
) -> MemoryReport:
    device = "cpu" if gpu is None else "cuda"
    if gpu is not None:
        resolve_gpu(gpu)  # a bad name fails before any tracing
    kwargs: dict[str, Any] = {
        "input_shape": input_shape_for(spec, shape),
        "dtype": setup.dtype,
        "optimizer": optimizer,
        "input_dtype": spec.input_dtype,
        "loss_fn": spec.loss_fn,
        "device": device,
    }
    source = model_source(spec)
    report = estimate(
        source,
        batch_size=setup.micro_batch(batch_size),
        name=spec.name,
        options=setup.step_options(),
        **kwargs,
    )
    report = replace(
        report, notes=list(dict.fromkeys([*report.notes, *assumptions(setup, optimizer, device)]))
    )
    if recommendations and setup == TrainingSetup(setup.precision, optimizer_impl=setup.optimizer_impl):
        report = with_recommendations(report, recommend(source, report, **kwargs))
    return report


def verdict(
    spec: ModelSpec,
    gpu: str,
    shape: Sequence[int] | None = None,
    *,
    batch_size: int = 8,
    setup: TrainingSetup | None = None,
    optimizer: str = "adamw",
    gpus: int = 1,
) -> Verdict:
    """Fits or not on `gpu` (a table name or GB), the largest batch, the cheapest options that fit.

    Raises ValueError for bad arguments and EstimationError when the model cannot be traced.
    """
    target = resolve_gpu(gpu)
    if gpus < 1:
        raise ValueError(f"gpus must be >= 1, got {gpus}")
    return gpu_verdict(
        model_source(spec),
        input_shape_for(spec, shape),
        target,
        batch_size=batch_size,
        setup=setup,
        optimizer=optimizer,
        input_dtype=spec.input_dtype,
        loss_fn=spec.loss_fn,
        gpus=gpus,
    )


def search_batch(
    spec: ModelSpec,
    shape: Sequence[int] | None = None,
    *,
    budget_bytes: int | None = None,
    dtype: str = "float32",
    optimizer: str = "adamw",
    device: DeviceName = "meta",
    margin: float = 0.1,
    limit: int = 4096,
) -> BatchSearch:
    """Largest batch that fits: real steps on CUDA, else the estimator against ``budget_bytes``.

    Raises ValueError when no budget is given in estimate mode or when batch 1 does not fit.
    """
    dims = input_shape_for(spec, shape)
    torch_dtype = dtype_of(dtype)
    common: dict[str, Any] = {
        "optimizer": optimizer,
        "input_dtype": spec.input_dtype,
        "loss_fn": spec.loss_fn,
    }
    if device == "cuda":
        with torch.device("cuda"):
            built = spec.build().to(dtype=torch_dtype)
        return find_max_batch_cuda(CudaStepProbe(built, dims, safety_margin=margin, **common), limit=limit)
    if budget_bytes is None or budget_bytes <= 0:
        raise ValueError("a positive memory budget is needed to search batch sizes without CUDA")
    peaks: dict[int, int] = {}
    fits = estimator_probe(
        model_source(spec), dims, budget_bytes, safety_margin=margin, peaks=peaks, dtype=torch_dtype, **common
    )
    try:
        search = find_max_batch(fits, limit=limit)
    except NoBatchFitsError:
        raise ValueError(
            f"batch size 1 needs {peaks[1] / GIB:.2f} GiB, over the {budget_bytes / GIB:.2f} GiB budget "
            f"with a {margin:.0%} margin"
        ) from None
    search.peak_bytes, search.budget_bytes = peaks, budget_bytes
    return search
