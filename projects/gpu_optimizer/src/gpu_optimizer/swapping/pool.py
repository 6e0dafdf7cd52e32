"""Exact-size buffer reuse for the swapper's tiers."""

from __future__ import annotations

import torch


class BufferPool:
    """Reuses buffers of the exact size: pinned allocation and page faults cost more than the copy."""

    def __init__(self) -> None:
        self.free: dict[int, list[torch.Tensor]] = {}
        self.bytes = 0

    def take(self, nbytes: int) -> torch.Tensor | None:
        bucket = self.free.get(nbytes)
        if not bucket:
            return None
        self.bytes -= nbytes
        return bucket.pop()

    def give(self, buffer: torch.Tensor) -> None:
        self.free.setdefault(buffer.numel(), []).append(buffer)
        self.bytes += buffer.numel()

    def drop(self, nbytes: int) -> None:
        """Release pooled buffers until at least ``nbytes`` are freed (or the pool is empty)."""
        for size in sorted(self.free, reverse=True):
            while self.free[size] and nbytes > 0:
                self.free[size].pop()
                self.bytes -= size
                nbytes -= size
        self.free = {k: v for k, v in self.free.items() if v}
