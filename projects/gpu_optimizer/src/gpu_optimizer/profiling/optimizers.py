"""Optimizers by name, as the profiler and the CLI accept them."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

# Extra state tensors per parameter (same size as the parameter); Adam-style ones also keep a
# scalar step tensor per parameter.
OPTIMIZER_STATES: dict[str, int] = {
    "sgd": 0,
    "sgd_momentum": 1,
    "adagrad": 1,
    "rmsprop": 1,
    "adam": 2,
    "adamw": 2,
}


def build_optimizer(
    name: str, params: Iterable[torch.Tensor], *, foreach: bool | None = None, fused: bool | None = None
) -> torch.optim.Optimizer:
    """A torch optimizer named `name` (see OPTIMIZER_STATES) with default hyper-parameters.

    `foreach=True` reproduces the CUDA default (multi-tensor kernels, larger temporaries);
    `fused=True` the fused kernels (sgd, adam, adamw, adagrad). Raises ValueError for an unknown
    name or fused kernels the optimizer lacks.
    """
    key = name.lower()
    if key not in _BUILDERS:
        raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZER_STATES)}")
    if fused and key not in FUSED:
        raise ValueError(f"{name} has no fused implementation; fused: {', '.join(FUSED)}")
    optimizer, settings = _BUILDERS[key]
    implementation: dict[str, bool | None] = {"fused": True} if fused else {"foreach": foreach}
    return optimizer(list(params), **settings, **implementation)


# name -> (class, hyper-parameters other than the defaults)
_BUILDERS: dict[str, tuple[Callable[..., torch.optim.Optimizer], dict[str, float]]] = {
    "sgd": (torch.optim.SGD, {"lr": 1e-3}),
    "sgd_momentum": (torch.optim.SGD, {"lr": 1e-3, "momentum": 0.9}),
    "adagrad": (torch.optim.Adagrad, {}),
    "rmsprop": (torch.optim.RMSprop, {}),
    "adam": (torch.optim.Adam, {}),
    "adamw": (torch.optim.AdamW, {}),
}
FUSED = ("sgd", "sgd_momentum", "adagrad", "adam", "adamw")
