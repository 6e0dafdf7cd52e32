"""Sharded and replicated data parallelism, priced per rank from the traced step.

The step is traced once with full-size tensors; what one rank of N holds is then derived from
each storage's kind and phase, and the all-gathered parameters and reduce-scatter buffers of
FSDP / ZeRO-3 are added as storages of kind "sharding" by hooks on the wrapped units while the
step is traced. What each option holds per rank (see docs/profiling.md):
- ddp: everything replicated, plus gradient buckets as large as the gradients (DDP's default
  gradient_as_bucket_view=False).
- zero1: optimizer state and the optimizer step's temporaries divided by N.
- zero2: zero1, and the gradients kept between backward and the step divided by N.
- zero3 / fsdp (FSDP2 fully_shard of the units, then the root): zero2, and parameters divided by
  N; a unit's full parameters are gathered for its forward and again for its backward (the
  previous unit's all-gather prefetched meanwhile), and its flat reduce-scatter input lives until
  the next unit's reduce-scatter; the root's own parameters stay gathered from the start of
  forward to the end of backward.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torch.utils.hooks import RemovableHandle

from gpu_optimizer.profiling.blocks import heaviest_repeated_blocks
from gpu_optimizer.profiling.tracker import StorageRecord, StorageTracker

Sharding = Literal["none", "ddp", "zero1", "zero2", "zero3", "fsdp"]
SHARDINGS: tuple[Sharding, ...] = ("none", "ddp", "zero1", "zero2", "zero3", "fsdp")


def shards_state(sharding: Sharding) -> bool:
    return sharding in ("zero1", "zero2", "zero3", "fsdp")


def shards_gradients(sharding: Sharding) -> bool:
    return sharding in ("zero2", "zero3", "fsdp")


def shards_parameters(sharding: Sharding) -> bool:
    return sharding in ("zero3", "fsdp")


def per_rank_bytes(record: StorageRecord, sharding: Sharding, world_size: int) -> int:
    """Bytes one rank holds of `record` (a shard is padded up so that N shards cover it)."""
    divide = (
        (record.kind == "optimizer_state" and shards_state(sharding))
        or (record.phase == "optimizer" and record.kind == "temporaries" and shards_state(sharding))
        or (record.kind == "gradients" and shards_gradients(sharding))
        or (record.kind == "parameters" and shards_parameters(sharding))
    )
    return -(-record.nbytes // world_size) if divide and world_size > 1 else record.nbytes


def default_units(model: torch.nn.Module) -> list[str]:
    """The outermost instances of the repeated block class holding the most parameters.

    These are what FSDP wraps in practice (transformer blocks, residual stages). Returns [] when
    no class with children repeats.
    """
    return heaviest_repeated_blocks(
        model, lambda n: sum(p.numel() for p in model.get_submodule(n).parameters())
    )


class _Gatherer:
    """Allocates and frees what FSDP2 holds for its units, in FSDP2's order.

    Unshard: the flat all-gather output, then the unsharded parameters copied out of it, then the
    flat buffer freed. In backward a unit also prefetches the all-gather of the unit before it;
    its post-backward copies the gradients (traced at full size until then) into a flat
    reduce-scatter input kept until the next unit's reduce-scatter (the scattered shard is the
    traced gradient, counted per rank).
    With gloo the all-gather also holds a copy of its output (`copies` = 1; NCCL: 0).
    """

    def __init__(self, tracker: StorageTracker, dtype: torch.dtype, copies: int) -> None:
        self.tracker = tracker
        self.dtype = dtype
        self.copies = copies
        self.held: dict[str, list[torch.Tensor]] = {}
        self.prefetched: dict[str, list[torch.Tensor]] = {}
        self.pending_reduce: list[torch.Tensor] = []

    def _buffer(self, numel: int) -> torch.Tensor:
        t = torch.empty(numel, dtype=self.dtype)
        self.tracker.register([t], "sharding")
        uid = self.tracker.uid_of(t)
        if uid is not None:
            self.tracker.records[uid].kind = "sharding"
        return t

    def _all_gather(self, numel: int) -> list[torch.Tensor]:
        return [self._buffer(numel) for _ in range(1 + self.copies)]

    def gather(self, unit: str, numel: int) -> None:
        if unit in self.held or numel == 0:
            return
        flat = self.prefetched.pop(unit, None) or self._all_gather(numel)
        held = [self._buffer(numel)]
        del flat
        self.held[unit] = held

    def prefetch(self, unit: str, numel: int) -> None:
        if unit not in self.held and unit not in self.prefetched and numel:
            self.prefetched[unit] = self._all_gather(numel)

    def release(self, unit: str, grad_numel: int = 0) -> None:
        if unit in self.held and grad_numel:
            self.pending_reduce = []  # the previous unit's reduce-scatter is done
            # gloo's own copy of the reduce-scatter input goes when its async work completes,
            # which on CPU is mostly before the peak: only the all-gather's copy is counted.
            self.pending_reduce = [self._buffer(grad_numel)]
        self.held.pop(unit, None)


@contextmanager
def fsdp_hooks(
    model: torch.nn.Module,
    tracker: StorageTracker,
    units: list[str],
    dtype: torch.dtype,
    copies: int = 0,
) -> Iterator[_Gatherer]:
    """Hooks that gather each unit's parameters around its forward and its backward.

    The root's own parameters (those outside every unit) are gathered when the model's forward
    starts; the caller releases them after backward with `gatherer.release("")`.
    """
    gatherer = _Gatherer(tracker, dtype, copies)
    handles: list[RemovableHandle] = []
    in_units: set[int] = set()
    sizes: list[tuple[str, int, int]] = []
    for name in units:
        params = [p for p in model.get_submodule(name).parameters() if id(p) not in in_units]
        in_units |= {id(p) for p in params}
        sizes.append(
            (name, sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad))
        )
    for index, (name, numel, grad_numel) in enumerate(sizes):
        before = sizes[index - 1][:2] if index else None
        unit = model.get_submodule(name)
        handles += _unit_hooks(unit, name, numel, grad_numel, before, gatherer, tracker)
    root_numel = sum(p.numel() for p in model.parameters() if id(p) not in in_units)

    def root_pre(module: torch.nn.Module, args: Any) -> None:
        if tracker.phase == "forward":
            gatherer.gather("", root_numel)

    handles.append(model.register_forward_pre_hook(root_pre))
    try:
        yield gatherer
    finally:
        for h in handles:
            h.remove()
        gatherer.held.clear()
        gatherer.prefetched.clear()
        gatherer.pending_reduce.clear()


def _unit_hooks(
    unit: torch.nn.Module,
    name: str,
    numel: int,
    grad_numel: int,
    before: tuple[str, int] | None,
    gatherer: _Gatherer,
    tracker: StorageTracker,
) -> list[RemovableHandle]:
    def pre_forward(module: torch.nn.Module, args: Any) -> None:
        gatherer.gather(name, numel)

    def post_forward(module: torch.nn.Module, args: Any, output: Any) -> None:
        if tracker.phase == "forward":  # a re-run forward (checkpointing) keeps what backward gathered
            gatherer.release(name)

    def pre_backward(module: torch.nn.Module, grad_output: Any) -> None:
        gatherer.gather(name, numel)
        if before is not None:
            gatherer.prefetch(*before)

    def post_backward(module: torch.nn.Module, grad_input: Any, grad_output: Any) -> None:
        gatherer.release(name, grad_numel)

    return [
        unit.register_forward_pre_hook(pre_forward),
        unit.register_forward_hook(post_forward, always_call=True),
        unit.register_full_backward_pre_hook(pre_backward),
        unit.register_full_backward_hook(post_backward),
    ]
