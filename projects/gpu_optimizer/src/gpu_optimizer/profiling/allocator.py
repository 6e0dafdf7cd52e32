"""Replay allocations through a model of PyTorch's CUDA caching allocator.

The rules are those of c10/cuda/CUDACachingAllocator.cpp.

What a CUDA OOM or `nvidia-smi` sees is the memory *reserved* in segments, not the bytes of live
tensors. The model follows the allocator's rules with its default settings (no
`expandable_segments`, no `max_split_size_mb`, one stream, no `empty_cache`):
- sizes round up to multiples of 512 bytes;
- requests of at most 1 MiB come from a small pool of 2 MiB segments, larger ones from a large
  pool: under 10 MiB a 20 MiB segment, else the size rounded up to 2 MiB;
- a request takes the smallest free block of its pool that holds it (best fit), and splits it
  when the rest is at least 512 bytes (small pool) or more than 1 MiB (large pool);
- freed blocks merge with free neighbours; segments are kept, so reserved memory only grows.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field

MIN_BLOCK = 512
SMALL_SIZE = 1024**2
SMALL_BUFFER = 2 * 1024**2
LARGE_BUFFER = 20 * 1024**2
MIN_LARGE_ALLOC = 10 * 1024**2
ROUND_LARGE = 2 * 1024**2


def round_size(nbytes: int) -> int:
    """The size the allocator hands out for a request of `nbytes` (what `allocated` counts)."""
    if nbytes < MIN_BLOCK:
        return MIN_BLOCK
    return -(-nbytes // MIN_BLOCK) * MIN_BLOCK


def segment_size(rounded: int) -> int:
    """Bytes cudaMalloc'ed when no cached block holds a request of `rounded` bytes."""
    if rounded <= SMALL_SIZE:
        return SMALL_BUFFER
    if rounded < MIN_LARGE_ALLOC:
        return LARGE_BUFFER
    return -(-rounded // ROUND_LARGE) * ROUND_LARGE


@dataclass(eq=False)
class _Block:
    segment: int
    offset: int
    size: int
    small: bool
    free: bool = True
    prev: _Block | None = None
    next: _Block | None = None

    def key(self) -> tuple[int, int, int]:
        return (self.size, self.segment, self.offset)


@dataclass
class CachingAllocatorModel:
    """Allocate and free by id; `allocated`, `reserved` and their peaks follow the CUDA allocator."""

    allocated: int = 0
    reserved: int = 0
    peak_allocated: int = 0
    peak_reserved: int = 0
    segments: int = 0
    _free: dict[bool, list[tuple[int, int, int]]] = field(default_factory=lambda: {True: [], False: []})
    _blocks: dict[tuple[int, int, int], _Block] = field(default_factory=dict)
    _live: dict[int, _Block] = field(default_factory=dict)

    def malloc(self, ident: int, nbytes: int) -> None:
        if nbytes == 0:  # empty tensors never reach the allocator
            return
        size = round_size(nbytes)
        small = size <= SMALL_SIZE
        pool = self._free[small]
        index = bisect.bisect_left(pool, (size, -1, -1))
        if index < len(pool):
            block = self._blocks.pop(pool.pop(index))
        else:
            seg = segment_size(size)
            block = _Block(self.segments, 0, seg, small)
            self.segments += 1
            self.reserved += seg
            self.peak_reserved = max(self.peak_reserved, self.reserved)
        rest = block.size - size
        if rest >= MIN_BLOCK if small else rest > SMALL_SIZE:
            tail = _Block(block.segment, block.offset + size, rest, small, True, block, block.next)
            if block.next is not None:
                block.next.prev = tail
            block.next = tail
            block.size = size
            self._insert(tail)
        block.free = False
        self._live[ident] = block
        self.allocated += block.size
        self.peak_allocated = max(self.peak_allocated, self.allocated)

    def release(self, ident: int) -> None:
        block = self._live.pop(ident, None)
        if block is None:
            return
        self.allocated -= block.size
        block.free = True
        for neighbour in (block.prev, block.next):
            if neighbour is not None and neighbour.free:
                self._remove(neighbour)
                if neighbour is block.prev:
                    neighbour.size += block.size
                    neighbour.next = block.next
                    if block.next is not None:
                        block.next.prev = neighbour
                    block = neighbour
                else:
                    block.size += neighbour.size
                    block.next = neighbour.next
                    if neighbour.next is not None:
                        neighbour.next.prev = block
        self._insert(block)

    def _insert(self, block: _Block) -> None:
        key = block.key()
        bisect.insort(self._free[block.small], key)
        self._blocks[key] = block

    def _remove(self, block: _Block) -> None:
        key = block.key()
        pool = self._free[block.small]
        del pool[bisect.bisect_left(pool, key)]
        del self._blocks[key]


def simulate(events: Iterable[tuple[int, int]]) -> CachingAllocatorModel:
    """Replay (id, +bytes) allocations and (id, -1) frees; returns the allocator afterwards."""
    model = CachingAllocatorModel()
    for ident, nbytes in events:
        if nbytes >= 0:
            model.malloc(ident, nbytes)
        else:
            model.release(ident)
    return model
