"""How a training step runs beyond model, batch and dtype: what the estimator is told."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from gpu_optimizer.profiling.sharding import SHARDINGS, Sharding

OptimizerImpl = Literal["single", "foreach", "fused"]


@dataclass(frozen=True)
class StepOptions:
    """How the training step runs, beyond model, batch and dtype.

    `autocast_dtype`: forward under autocast (mixed precision; the parameters keep `dtype`).
    `checkpoint_blocks`: modules whose forward runs under non-reentrant activation checkpointing.
    `optimizer_offload`: the optimizer state and its step live in host memory.
    `accumulate_gradients`: gradients from earlier micro-batches are alive during this one.
    `keep_output`: the model's output stays referenced until the step ends (``out = model(x)``).
    `optimizer_impl`: single-tensor, foreach or fused kernels (None: the device's default).
    `sharding`/`world_size`: data parallelism across ranks; the report is one rank's memory.
    `shard_units`: the modules FSDP / ZeRO-3 wraps (empty: the repeated blocks).
    `collectives`: "gloo" (CPU) copies every collective's buffer once more; "nccl" does not.
    """

    autocast_dtype: torch.dtype | None = None
    checkpoint_blocks: tuple[str, ...] = ()
    optimizer_offload: bool = False
    accumulate_gradients: bool = False
    keep_output: bool = False
    optimizer_impl: OptimizerImpl | None = None
    sharding: Sharding = "none"
    world_size: int = 1
    shard_units: tuple[str, ...] = ()
    collectives: Literal["nccl", "gloo"] = "nccl"

    def __post_init__(self) -> None:
        if self.world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {self.world_size}")
        if self.sharding not in SHARDINGS:
            raise ValueError(f"sharding must be one of {SHARDINGS}, got {self.sharding!r}")
        if self.optimizer_impl not in (None, "single", "foreach", "fused"):
            raise ValueError(f"optimizer_impl must be single, foreach or fused, got {self.optimizer_impl!r}")
