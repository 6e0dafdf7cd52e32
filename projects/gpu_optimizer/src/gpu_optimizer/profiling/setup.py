"""A training setup as the user states it (precision, accumulation, sharding, ...), turned into
the estimator's arguments, and the assumptions an estimate under it rests on."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch

from gpu_optimizer.profiling.options import OptimizerImpl, StepOptions
from gpu_optimizer.profiling.sharding import SHARDINGS, Sharding

Precision = Literal["fp32", "bf16", "fp16", "amp-bf16", "amp-fp16"]
# precision -> (parameter / optimizer-state dtype, autocast dtype)
PRECISIONS: dict[str, tuple[torch.dtype, torch.dtype | None]] = {
    "fp32": (torch.float32, None),
    "bf16": (torch.bfloat16, None),
    "fp16": (torch.float16, None),
    "amp-bf16": (torch.float32, torch.bfloat16),
    "amp-fp16": (torch.float32, torch.float16),
}
# the older --dtype names
DTYPE_PRECISIONS: dict[str, Precision] = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


@dataclass(frozen=True)
class TrainingSetup:
    """How the step is trained. `batch_size` elsewhere is per rank and per optimizer step; with
    `accumulation_steps` > 1 it is split into micro-batches of batch_size / accumulation_steps."""

    precision: Precision = "fp32"
    keep_output: bool = False
    accumulation_steps: int = 1
    checkpoint_blocks: tuple[str, ...] = ()
    sharding: Sharding = "none"
    world_size: int = 1
    offload_optimizer: bool = False
    optimizer_impl: OptimizerImpl | None = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.accumulation_steps < 1:
            raise ValueError(f"accumulation_steps must be >= 1, got {self.accumulation_steps}")
        if self.sharding not in SHARDINGS:
            raise ValueError(f"sharding must be one of {', '.join(SHARDINGS)}, got {self.sharding!r}")
        if self.world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {self.world_size}")
        if self.sharding != "none" and self.world_size < 2:
            raise ValueError(f"sharding {self.sharding} needs world_size >= 2")

    @property
    def dtype(self) -> torch.dtype:
        return PRECISIONS[self.precision][0]

    def micro_batch(self, batch_size: int) -> int:
        """The micro-batch of one forward/backward. Raises ValueError if it does not divide."""
        if batch_size % self.accumulation_steps:
            raise ValueError(
                f"batch size {batch_size} is not divisible by {self.accumulation_steps} accumulation steps"
            )
        return batch_size // self.accumulation_steps

    def step_options(self) -> StepOptions:
        return StepOptions(
            autocast_dtype=PRECISIONS[self.precision][1],
            checkpoint_blocks=self.checkpoint_blocks,
            optimizer_offload=self.offload_optimizer,
            accumulate_gradients=self.accumulation_steps > 1,
            keep_output=self.keep_output,
            optimizer_impl=self.optimizer_impl,
            sharding=self.sharding,
            world_size=self.world_size,
        )

    def label(self) -> str:
        """Short description of what differs from a plain fp32 step, e.g. "amp-bf16 + fsdp x4"."""
        parts: list[str] = [] if self.precision == "fp32" else [self.precision]
        if self.checkpoint_blocks:
            parts.append(f"checkpoint {len(self.checkpoint_blocks)} blocks")
        if self.accumulation_steps > 1:
            parts.append(f"accumulate x{self.accumulation_steps}")
        if self.sharding != "none":
            parts.append(f"{self.sharding} x{self.world_size}")
        if self.offload_optimizer:
            parts.append("optimizer on CPU")
        if self.keep_output:
            parts.append("output kept")
        return " + ".join(parts) or "plain fp32"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["checkpoint_blocks"] = list(self.checkpoint_blocks)
        return data


def assumptions(setup: TrainingSetup, optimizer: str, device: str) -> list[str]:
    """What an estimate under `setup` takes for granted, in words."""
    impl = setup.optimizer_impl or ("foreach" if device == "cuda" else "single")
    dtype = str(setup.dtype).removeprefix("torch.")
    out = [
        f"parameters, gradients and {optimizer} state in {dtype}"
        + (
            f"; forward under autocast({setup.precision.removeprefix('amp-')})"
            if "amp" in setup.precision
            else ""
        ),
        f"optimizer step with the {impl} implementation"
        + (" (the CUDA default)" if impl == "foreach" and setup.optimizer_impl is None else ""),
        "the model output is "
        + ("kept until the step ends" if setup.keep_output else "freed once the loss is computed"),
        "batch size is per rank and per optimizer step"
        + (f", run as {setup.accumulation_steps} micro-batches" if setup.accumulation_steps > 1 else ""),
    ]
    if setup.precision == "amp-fp16":
        out.append("GradScaler's scale and found-inf tensors (a few bytes) are not counted")
    if setup.sharding != "none":
        out.append(f"{setup.sharding} across {setup.world_size} ranks: every figure is one rank's")
    if setup.offload_optimizer:
        out.append("optimizer state and step in host memory; gradients stay on the device")
    if device == "cuda":
        out.append("kernels traced with CPU semantics (attention, convolution algorithms may differ)")
    return out
