"""Activation offloading: tensors autograd saves for backward go through a TensorSwapper's tiers."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from gpu_optimizer.swapping.swapper import TensorSwapper
from gpu_optimizer.swapping.tiers import Tier


class _Handle:
    """What autograd keeps instead of the activation; frees the swapped copy when autograd drops it."""

    __slots__ = ("name", "swapper")

    def __init__(self, swapper: TensorSwapper, name: str) -> None:
        self.swapper, self.name = swapper, name

    def __del__(self) -> None:
        self.swapper.discard(self.name)


@contextmanager
def offload_activations(
    swapper: TensorSwapper | None = None,
    *,
    tier: Tier = Tier.HOST,
    min_bytes: int = 1024,
    host_budget: int = sys.maxsize,
    swap_dir: Path | None = None,
) -> Iterator[TensorSwapper]:
    """Offload activations saved during the forward pass inside this block to ``tier``.

    Each saved tensor of at least ``min_bytes`` (parameters excluded: they stay resident anyway) is
    registered with the swapper and fetched back, byte for byte, when backward needs it.

    Args:
        swapper: the swapper to use; when None one is created for the block (device budget
            unlimited, ``host_budget`` and ``swap_dir`` as given) and closed at the end, so run
            backward inside the block.
        tier: where saved tensors go first (``Tier.HOST`` or ``Tier.DISK``).
        min_bytes: smaller tensors stay in the graph as they are.

    Yields:
        The swapper, for its :meth:`~TensorSwapper.stats`.
    """
    own = swapper is None
    active = swapper if swapper is not None else TensorSwapper(sys.maxsize, host_budget, swap_dir)
    counter = itertools.count()

    def pack(tensor: torch.Tensor) -> torch.Tensor | _Handle:
        if (
            isinstance(tensor, torch.nn.Parameter)
            or tensor.device != active.device
            or tensor.numel() * tensor.element_size() < min_bytes
        ):
            return tensor
        name = f"activation/{id(active):x}/{next(counter)}"
        active.register(name, tensor, tier=tier)
        return _Handle(active, name)

    def unpack(packed: torch.Tensor | _Handle) -> torch.Tensor:
        if isinstance(packed, torch.Tensor):
            return packed
        return active.get(packed.name)

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
            yield active
    finally:
        if own:
            active.close()
