"""The training kit's configuration: one frozen dataclass whose digest names the run's settings."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from gpu_optimizer.guard import GuardAction

Precision = Literal["fp32", "bf16", "fp16"]
Strategy = Literal["ddp", "fsdp"]


@dataclass(frozen=True)
class TrainConfig:
    """What the kit needs to run, checkpoint, guard and report a training run.

    `global_batch_size` is the effective batch of one optimizer step over all ranks; it never
    changes, so the learning-rate schedule does not either. `micro_batch_size` is what one rank
    pushes through forward/backward at once (None: the largest the estimator fits in the memory
    budget, or the whole per-rank batch when there is no budget); the kit accumulates gradients
    over `per_rank_batch / micro_batch_size` micro-batches.
    """

    run_name: str
    max_steps: int
    global_batch_size: int
    seed: int = 0
    micro_batch_size: int | None = None
    memory_budget_bytes: int | None = None
    memory_safety_margin: float = 0.1
    precision: Precision = "fp32"
    grad_clip_norm: float | None = None
    checkpoint_dir: Path | None = None
    checkpoint_every_steps: int | None = None
    checkpoint_every_s: float | None = None
    keep_last: int = 3
    eval_every_steps: int | None = None
    log_every_steps: int = 10
    log_path: Path | None = None
    service_url: str | None = None
    service_api_key: str | None = field(default=None, repr=False)
    strategy: Strategy = "ddp"
    # guard
    on_nonfinite: GuardAction = GuardAction.SKIP_STEP
    on_exploding_gradient: GuardAction = GuardAction.SKIP_STEP
    on_nonfinite_parameter: GuardAction = GuardAction.ABORT
    on_loss_spike: GuardAction = GuardAction.SKIP_STEP
    max_grad_norm: float = 1e4
    # Parameters are checked after every K-th step, before every checkpoint and on any non-finite
    # loss or gradient norm (see docs/training.md, "The guard on every step").
    param_check_every_steps: int = 10
    spike_factor: float = 5.0
    spike_window: int = 20
    spike_warmup: int = 5
    rollback_lr_factor: float = 0.5
    max_rollbacks: int = 3

    def __post_init__(self) -> None:
        for name in ("on_nonfinite", "on_exploding_gradient", "on_nonfinite_parameter", "on_loss_spike"):
            # Plain strings ("rollback") are accepted; the loop compares actions by identity.
            object.__setattr__(self, name, GuardAction(getattr(self, name)))
        if self.max_steps < 1 or self.global_batch_size < 1:
            raise ValueError("max_steps and global_batch_size must be >= 1")
        if self.micro_batch_size is not None and self.micro_batch_size < 1:
            raise ValueError("micro_batch_size must be >= 1")
        if self.memory_budget_bytes is not None and self.memory_budget_bytes <= 0:
            raise ValueError("memory_budget_bytes must be positive")
        if self.param_check_every_steps < 1:
            raise ValueError("param_check_every_steps must be >= 1")
        for name in ("checkpoint_every_steps", "eval_every_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.log_every_steps < 1 or self.spike_window < 3 or self.spike_factor <= 1:
            raise ValueError("log_every_steps >= 1, spike_window >= 3 and spike_factor > 1 are required")
        if not 0 < self.rollback_lr_factor <= 1:
            raise ValueError("rollback_lr_factor must be in (0, 1]")
        needs_ckpt = GuardAction.ROLLBACK in (
            self.on_nonfinite,
            self.on_exploding_gradient,
            self.on_nonfinite_parameter,
            self.on_loss_spike,
        )
        if needs_ckpt and self.checkpoint_dir is None:
            raise ValueError(
                "a rollback action needs checkpoint_dir (rollback loads the last good checkpoint)"
            )
        if (self.checkpoint_every_steps or self.checkpoint_every_s) and self.checkpoint_dir is None:
            raise ValueError("periodic checkpoints need checkpoint_dir")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("service_api_key")
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()}

    @property
    def digest(self) -> str:
        """SHA-256 (16 hex digits) of the settings that change what is trained.

        Where logs, checkpoints and the service are reached is left out, so the same training
        has the same digest on every machine.
        """
        data = self.to_dict()
        for key in ("checkpoint_dir", "log_path", "service_url", "log_every_steps"):
            data.pop(key)
        text = json.dumps(data, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]
