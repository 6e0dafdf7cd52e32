"""Will it train on this GPU? Fits or not, the largest batch that fits, and the cheapest
combination of options that makes the requested batch fit, each priced by a re-estimate.

What counts against the GPU's memory: the caching allocator's reserved peak (the allocator
model replaying the estimated step), cuBLAS's workspace segment, the CUDA context, and for
models with convolutions a cuDNN workspace allowance (gpus.json states the figures).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from gpu_optimizer.profiling.allocator import round_size, segment_size
from gpu_optimizer.profiling.batch_size import NoBatchFitsError, find_max_batch
from gpu_optimizer.profiling.estimator import LossFn, ModelSource, estimate, materialise
from gpu_optimizer.profiling.gpus import GpuTarget
from gpu_optimizer.profiling.recommend import checkpoint_candidates
from gpu_optimizer.profiling.setup import Precision, TrainingSetup, assumptions
from gpu_optimizer.profiling.sharding import Sharding

# Relative slowdown of each option, used only to order the combinations (cheapest first); the
# memory of every combination is estimated, never derived from these.
COSTS = {
    "amp-bf16": 0.0,
    "zero1": 0.1,
    "zero2": 0.2,
    "accumulate": 0.3,
    "fsdp": 0.4,
    "checkpoint": 0.5,
    "offload": 2.0,
}
MAX_COMBINATIONS = 24


@dataclass(frozen=True)
class Priced:
    """One setup at one batch size against the target. Bytes are one rank's."""

    label: str
    setup: dict[str, Any]
    batch_size: int
    micro_batch_size: int
    tensor_peak_bytes: int
    allocated_bytes: int
    reserved_bytes: int
    device_bytes: int
    fits: bool
    cost: float = 0.0


@dataclass(frozen=True)
class Verdict:
    """The answer for `target`: `fits` at the requested batch with the user's setup."""

    target: dict[str, Any]
    fits: bool
    requested: Priced
    largest_batch: int | None
    largest: Priced | None
    cheapest: Priced | None
    tried: list[Priced] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Pricer:
    module: torch.nn.Module
    input_shape: tuple[int, ...]
    target: GpuTarget
    optimizer: str
    input_dtype: torch.dtype | None
    loss_fn: LossFn | None
    conv: bool

    def __call__(self, setup: TrainingSetup, batch_size: int, cost: float = 0.0) -> Priced:
        micro = setup.micro_batch(batch_size)
        report = estimate(
            self.module,
            self.input_shape,
            batch_size=micro,
            dtype=setup.dtype,
            optimizer=self.optimizer,
            device="cuda",
            input_dtype=self.input_dtype,
            loss_fn=self.loss_fn,
            options=setup.step_options(),
        )
        t = self.target
        allocated = (report.allocated_peak_bytes or 0) + round_size(t.cublas_workspace_bytes)
        reserved = (report.reserved_peak_bytes or 0) + segment_size(round_size(t.cublas_workspace_bytes))
        device = reserved + t.context_bytes + (t.cudnn_workspace_bytes if self.conv else 0)
        return Priced(
            setup.label(), setup.to_dict(), batch_size, micro, report.peak_bytes,
            allocated, reserved, device, device <= t.memory_bytes, cost,
        )  # fmt: skip


def gpu_verdict(
    model: ModelSource,
    input_shape: Sequence[int],
    target: GpuTarget,
    *,
    batch_size: int,
    setup: TrainingSetup | None = None,
    optimizer: str = "adamw",
    input_dtype: torch.dtype | None = None,
    loss_fn: LossFn | None = None,
    gpus: int = 1,
    batch_limit: int = 4096,
) -> Verdict:
    """Price the step on `target`; search the largest batch and the cheapest fitting options.

    `gpus` is how many GPUs the user has: sharding options are tried only when it is above 1.
    Raises ValueError for bad arguments and EstimationError when the model cannot be traced.
    """
    base = setup or TrainingSetup()
    module = materialise(model)
    conv = any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in module.modules())
    pricer = _Pricer(
        module, tuple(int(d) for d in input_shape), target, optimizer, input_dtype, loss_fn, conv
    )
    requested = pricer(base, batch_size)
    largest_batch, largest = _largest(pricer, base, batch_limit)
    cheapest, tried = (requested, []) if requested.fits else _cheapest(pricer, module, base, batch_size, gpus)
    return Verdict(
        target=asdict(target),
        fits=requested.fits,
        requested=requested,
        largest_batch=largest_batch,
        largest=largest,
        cheapest=cheapest,
        tried=tried,
        assumptions=[
            *assumptions(base, optimizer, "cuda"),
            f"on {target.name}: {target.memory_bytes} bytes, of which the CUDA context takes "
            f"{target.context_bytes} and cuBLAS's workspace {target.cublas_workspace_bytes}"
            + (f"; {target.cudnn_workspace_bytes} allowed for cuDNN workspaces" if conv else ""),
        ],
    )


def _largest(pricer: _Pricer, setup: TrainingSetup, limit: int) -> tuple[int | None, Priced | None]:
    steps = setup.accumulation_steps
    priced: dict[int, Priced] = {}

    def fits(micro: int) -> bool:
        priced[micro] = pricer(setup, micro * steps)
        return priced[micro].fits

    try:
        search = find_max_batch(fits, limit=max(1, limit // steps))
    except NoBatchFitsError:
        return None, None
    return search.batch_size * steps, priced[search.batch_size]


def _cheapest(
    pricer: _Pricer, module: torch.nn.Module, base: TrainingSetup, batch_size: int, gpus: int
) -> tuple[Priced | None, list[Priced]]:
    """Try option combinations from the cheapest up; the first that fits wins."""
    candidates: list[tuple[float, TrainingSetup]] = []
    blocks = tuple(checkpoint_candidates(module, _activations_report(pricer, base, batch_size)))
    precisions: list[tuple[float, Precision]] = [(0.0, base.precision)]
    if base.precision == "fp32":
        precisions.append((COSTS["amp-bf16"], "amp-bf16"))
    shardings: list[tuple[float, Sharding, int]] = [(0.0, base.sharding, base.world_size)]
    if gpus > 1 and base.sharding == "none":
        shardings += [
            (COSTS["zero1"], "zero1", gpus),
            (COSTS["zero2"], "zero2", gpus),
            (COSTS["fsdp"], "fsdp", gpus),
        ]
    checkpoints = [(0.0, base.checkpoint_blocks)] + ([(COSTS["checkpoint"], blocks)] if blocks else [])
    accumulations = [(0.0, base.accumulation_steps)]
    steps = base.accumulation_steps * 2
    while batch_size % steps == 0 and steps <= batch_size:
        doublings = (steps // base.accumulation_steps).bit_length() - 1
        accumulations.append((COSTS["accumulate"] * doublings, steps))
        steps *= 2
    offloads = [(0.0, base.offload_optimizer)]
    if not base.offload_optimizer:
        offloads.append((COSTS["offload"], True))
    for (c1, prec), (c2, shard, world), (c3, ckpt), (c4, acc), (c5, off) in itertools.product(
        precisions, shardings, checkpoints, accumulations, offloads
    ):
        setup = replace(
            base, precision=prec, sharding=shard, world_size=world, checkpoint_blocks=ckpt,
            accumulation_steps=acc, offload_optimizer=off,
        )  # fmt: skip
        if setup != base:
            candidates.append((c1 + c2 + c3 + c4 + c5, setup))
    candidates.sort(key=lambda c: c[0])
    tried: list[Priced] = []
    for cost, setup in candidates[:MAX_COMBINATIONS]:
        priced = pricer(setup, batch_size, cost)
        tried.append(priced)
        if priced.fits:
            return priced, tried
    return None, tried


def _activations_report(pricer: _Pricer, setup: TrainingSetup, batch_size: int) -> Any:
    return estimate(
        pricer.module,
        pricer.input_shape,
        batch_size=setup.micro_batch(batch_size),
        dtype=setup.dtype,
        optimizer=pricer.optimizer,
        device="cuda",
        input_dtype=pricer.input_dtype,
        loss_fn=pricer.loss_fn,
    )
