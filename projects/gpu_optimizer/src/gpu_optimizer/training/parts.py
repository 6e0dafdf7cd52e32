"""Small pieces of the training loop: its result, what the guard steps, LR lowering, event helpers."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch

from gpu_optimizer.guard import (
    EventKind,
    GuardAction,
    GuardConfig,
    GuardEvent,
    TrainingAborted,
    TrainingGuard,
)
from gpu_optimizer.profiling.optimizers import OPTIMIZER_STATES
from gpu_optimizer.training.config import TrainConfig


@dataclass
class TrainResult:
    steps: int
    losses: dict[int, float] = field(default_factory=dict)
    eval: dict[str, float] = field(default_factory=dict)
    micro_batch: int = 0
    ooms: int = 0
    rollbacks: int = 0
    skipped: int = 0
    resumed_from: int | None = None
    events: list[dict[str, Any]] = field(default_factory=list)


class ScalerStep:
    """What the guard steps: the optimizer, through the grad scaler when there is one (fp16; its
    gradients were unscaled before the guard took their norm and clipped them)."""

    def __init__(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> None:
        self.optimizer, self.scaler = optimizer, scaler

    def step(self) -> None:
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
        else:
            self.optimizer.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)


def autocast(device_type: str, dtype: torch.dtype | None) -> Any:
    """The step's autocast context (none in fp32)."""
    return nullcontext() if dtype is None else torch.autocast(device_type, dtype=dtype)


def lower_learning_rate(optimizer: torch.optim.Optimizer, scheduler: Any, factor: float) -> None:
    """Scale the learning rate for good: param groups now, and what the scheduler computes from
    (`base_lrs` for LambdaLR-like schedulers, the groups' own `lr` for chained ones)."""
    for group in optimizer.param_groups:
        group["lr"] *= factor
        if "initial_lr" in group:
            group["initial_lr"] *= factor
    if scheduler is not None and hasattr(scheduler, "base_lrs"):
        scheduler.base_lrs = [lr * factor for lr in scheduler.base_lrs]


def abort(kind: EventKind, step: int, detail: str, digest: str, batch_size: int) -> TrainingAborted:
    """A TrainingAborted for the kit's own kinds ("loss_spike", "rollback_limit")."""
    return TrainingAborted(GuardEvent(kind, step, GuardAction.ABORT, detail, digest, batch_size))


def optimizer_name(
    factory: Callable[[Any], torch.optim.Optimizer], model: torch.nn.Module
) -> Callable[[], str]:
    """The estimator's name for the optimizer the factory builds (its state per parameter)."""

    def name() -> str:
        probe = factory(model.parameters())  # optimizers allocate their state lazily: cheap
        kind = type(probe).__name__.lower()
        if kind == "sgd" and any(g.get("momentum") for g in probe.param_groups):
            return "sgd_momentum"
        return kind if kind in OPTIMIZER_STATES else "adamw"

    return name


def rank_log_path(path: Path, rank: int) -> Path:
    return path.with_name(f"{path.stem}.rank{rank}{path.suffix}")


def make_guard(
    config: TrainConfig,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    batch_size: int,
    rollback: Callable[[], None],
) -> TrainingGuard:
    """The guard of the kit's steps (through `ScalerStep`, clipping with the norm it checks),
    with the config's actions."""
    return TrainingGuard(
        model,
        cast(torch.optim.Optimizer, ScalerStep(optimizer, scaler)),
        GuardConfig(
            config_digest=config.digest,
            on_nonfinite=config.on_nonfinite,
            on_exploding_gradient=config.on_exploding_gradient,
            on_nonfinite_parameter=config.on_nonfinite_parameter,
            on_repeated_oom=GuardAction.REDUCE_BATCH,
            max_grad_norm=config.max_grad_norm,
            clip_grad_norm=config.grad_clip_norm,
            max_consecutive_ooms=1,
            param_check_every=config.param_check_every_steps,
        ),
        batch_size=batch_size,
        rollback=rollback,
    )
