"""The record the swapper keeps for one named tensor, and its move counters."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import torch

from gpu_optimizer.swapping.tiers import Tier


@dataclass(eq=False)
class SwapEntry:
    name: str
    shape: torch.Size
    dtype: torch.dtype
    nbytes: int
    slot: int
    tier: Tier
    data: torch.Tensor | None = None
    pending: Future[None] | None = None
    event: Any = None  # torch.cuda.Event of an in-flight prefetch copy
    staging: torch.Tensor | None = None  # host buffer an in-flight copy reads from


@dataclass
class SwapCounters:
    """Swaps out of and into each tier, and the bytes and seconds the moves took."""

    swaps_in: dict[Tier, int] = field(default_factory=lambda: dict.fromkeys(Tier, 0))
    swaps_out: dict[Tier, int] = field(default_factory=lambda: dict.fromkeys(Tier, 0))
    bytes_moved: int = 0
    move_seconds: float = 0.0

    def count(self, src: Tier, dst: Tier, nbytes: int, seconds: float) -> None:
        self.swaps_out[src] += 1
        self.swaps_in[dst] += 1
        self.bytes_moved += nbytes
        self.move_seconds += seconds

    @property
    def throughput_bytes_per_s(self) -> float:
        return self.bytes_moved / self.move_seconds if self.move_seconds else 0.0
