"""Micro-batch sizes from the memory estimator, and a memory limit that simulates a device's.

The kit asks `find_max_batch` (doubling, then bisection) with the estimator's probe against the
budget: the given `memory_budget_bytes`, or the free memory of the CUDA device. On CPU there is
no allocator that fails, so `SimulatedDeviceLimit` raises the same `torch.OutOfMemoryError` a
CUDA device would when the estimated peak of a micro-batch exceeds its limit; tests and users
without a GPU exercise the OOM recovery path with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from gpu_optimizer.profiling import NoBatchFitsError, estimate, estimator_probe, find_max_batch
from gpu_optimizer.training.config import TrainConfig
from gpu_optimizer.training.data import fetch


def free_device_bytes(device: torch.device) -> int | None:
    """Free memory of a CUDA device (what another process holds is not ours), None elsewhere."""
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


def choose_micro_batch(
    model: torch.nn.Module,
    input_shape: Sequence[int],
    per_rank_batch: int,
    budget_bytes: int,
    *,
    safety_margin: float,
    optimizer: str = "adamw",
    input_dtype: torch.dtype | None = None,
    dtype: torch.dtype = torch.float32,
) -> int:
    """The largest micro-batch <= `per_rank_batch` whose estimated training step fits the budget.

    Raises:
        NoBatchFitsError: not even one sample fits.
    """
    probe = estimator_probe(
        model,
        input_shape,
        budget_bytes,
        safety_margin=safety_margin,
        optimizer=optimizer,
        input_dtype=input_dtype,
        dtype=dtype,
    )
    return find_max_batch(probe, start=1, limit=per_rank_batch).batch_size


def initial_micro_batch(
    config: TrainConfig,
    model: torch.nn.Module,
    train_set: Any,
    per_rank: int,
    device: torch.device,
    shape: Sequence[int] | None,
    dtype: torch.dtype | None,
    optimizer: Callable[[], str],
) -> int:
    """The configured micro-batch, else the estimator's choice for the budget (the configured one
    or the device's free memory), else the whole per-rank batch (CPU without a budget).

    The sample shape and dtype default to those of the first sample of `train_set`.
    """
    if config.micro_batch_size is not None:
        return min(config.micro_batch_size, per_rank)
    budget = config.memory_budget_bytes or free_device_bytes(device)
    if budget is None:
        return per_rank
    if shape is None:
        first = fetch(train_set, torch.tensor([0]))
        sample = first[0] if isinstance(first, tuple | list) else first
        shape, dtype = tuple(sample.shape[1:]), dtype or sample.dtype
    return choose_micro_batch(
        model,
        shape,
        per_rank,
        budget,
        safety_margin=config.memory_safety_margin,
        optimizer=optimizer(),
        input_dtype=dtype,
    )


class SimulatedDeviceLimit:
    """Raises `torch.OutOfMemoryError` for micro-batches whose peak exceeds `limit_bytes`.

    `peak_bytes(micro_batch)` is the estimator's peak by default (cached per size). The limit can
    be lowered while training runs (another process took memory), as on a shared GPU.
    """

    def __init__(self, limit_bytes: int, peak_bytes: Callable[[int], int]) -> None:
        self.limit_bytes = limit_bytes
        self._peak = peak_bytes
        self._cache: dict[int, int] = {}
        self.raised = 0

    @classmethod
    def from_estimator(
        cls,
        limit_bytes: int,
        model: torch.nn.Module,
        input_shape: Sequence[int],
        *,
        optimizer: str = "adamw",
        input_dtype: torch.dtype | None = None,
    ) -> SimulatedDeviceLimit:
        def peak(batch: int) -> int:
            report = estimate(
                model, input_shape, batch_size=batch, optimizer=optimizer, input_dtype=input_dtype
            )
            return int(report.peak_bytes)

        return cls(limit_bytes, peak)

    def peak(self, micro_batch: int) -> int:
        if micro_batch not in self._cache:
            self._cache[micro_batch] = self._peak(micro_batch)
        return self._cache[micro_batch]

    def check(self, micro_batch: int) -> None:
        """Raise like the CUDA allocator would if this micro-batch's step does not fit."""
        need = self.peak(micro_batch)
        if need > self.limit_bytes:
            self.raised += 1
            raise torch.OutOfMemoryError(
                f"simulated device limit: micro-batch {micro_batch} needs {need} bytes > {self.limit_bytes}"
            )


__all__ = [
    "NoBatchFitsError",
    "SimulatedDeviceLimit",
    "choose_micro_batch",
    "free_device_bytes",
    "initial_micro_batch",
]
