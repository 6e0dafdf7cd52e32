"""The repeated blocks of a model: what FSDP wraps and what activation checkpointing targets."""

from __future__ import annotations

from collections.abc import Callable

import torch

_CONTAINERS = (torch.nn.Sequential, torch.nn.ModuleList, torch.nn.ModuleDict)


def heaviest_repeated_blocks(model: torch.nn.Module, weight: Callable[[str], int]) -> list[str]:
    """The outermost instances of the repeated block class whose instances weigh most in total.

    Candidates are the non-container classes with children that occur at least twice
    (transformer blocks, residual bottlenecks, YOLO conv blocks); ``weight(name)`` is what one
    instance weighs (its parameters, its activations...).  Returns [] when no class repeats.
    """
    by_class: dict[type[torch.nn.Module], list[str]] = {}
    for name, module in model.named_modules():
        if name and not isinstance(module, _CONTAINERS) and any(True for _ in module.children()):
            by_class.setdefault(type(module), []).append(name)
    best: tuple[int, list[str]] = (0, [])
    for names in by_class.values():
        outer = [n for n in names if not any(n.startswith(f"{o}.") for o in names)]
        total = sum(weight(n) for n in outer)
        if len(outer) >= 2 and total > best[0]:
            best = (total, outer)
    return best[1]
