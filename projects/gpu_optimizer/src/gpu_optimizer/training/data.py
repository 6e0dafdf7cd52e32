"""Deterministic, resumable data order: the data position is (epoch, offset) and nothing else.

Every epoch is one permutation drawn from `seed + epoch`; step `offset` of that epoch takes the
global batch at `offset * global_batch`. Each rank takes its contiguous share of that global
batch and splits it into micro-batches, so the samples of one optimizer step are the same
whatever the micro-batch size or the restarts: halving the micro-batch after an OOM, or resuming
from a checkpoint, trains on exactly the data the uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset, TensorDataset, default_collate


@dataclass(frozen=True)
class DataPosition:
    epoch: int
    offset: int


class StepSampler:
    """Indices of each rank's share of the global batch of every step (drop_last semantics)."""

    def __init__(
        self, num_samples: int, global_batch: int, *, seed: int, rank: int = 0, world: int = 1
    ) -> None:
        if global_batch % world:
            raise ValueError(f"global batch {global_batch} is not divisible by the world size {world}")
        if num_samples < global_batch:
            raise ValueError(f"{num_samples} samples are fewer than one global batch of {global_batch}")
        self.num_samples = num_samples
        self.global_batch = global_batch
        self.seed = seed
        self.rank = rank
        self.world = world
        self.per_rank = global_batch // world
        self.steps_per_epoch = num_samples // global_batch
        self._epoch = -1
        self._perm = torch.empty(0, dtype=torch.long)

    def position(self, step: int) -> DataPosition:
        """Where step `step` (0-based, optimizer steps) reads."""
        return DataPosition(step // self.steps_per_epoch, step % self.steps_per_epoch)

    def indices(self, step: int) -> torch.Tensor:
        pos = self.position(step)
        if pos.epoch != self._epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + pos.epoch)
            self._perm = torch.randperm(self.num_samples, generator=gen)
            self._epoch = pos.epoch
        start = pos.offset * self.global_batch + self.rank * self.per_rank
        return self._perm[start : start + self.per_rank]


def fetch(dataset: Dataset[Any] | Sequence[Any], indices: torch.Tensor) -> Any:
    """The batch of `indices` (TensorDatasets by fancy indexing, others item by item)."""
    if isinstance(dataset, TensorDataset):
        return tuple(t[indices] for t in dataset.tensors)
    return default_collate([dataset[int(i)] for i in indices])


def split(indices: torch.Tensor, micro_batch: int) -> list[torch.Tensor]:
    """Micro-batches of at most `micro_batch` indices (the whole batch when it fits)."""
    if micro_batch >= len(indices):
        return [indices]
    return list(torch.split(indices, micro_batch))


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, tuple | list):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch
