"""Optimizers by name, as the profiler and the CLI accept them."""

from __future__ import annotations

from collections.abc import Iterable

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
    plist = list(params)
    key = name.lower()
    if fused:
        if key not in FUSED:
            raise ValueError(f"{name} has no fused implementation; fused: {', '.join(FUSED)}")
        return _fused(key, plist)
    if key == "sgd":
        return torch.optim.SGD(plist, lr=1e-3, foreach=foreach)
    if key == "sgd_momentum":
        return torch.optim.SGD(plist, lr=1e-3, momentum=0.9, foreach=foreach)
    if key == "adagrad":
        return torch.optim.Adagrad(plist, foreach=foreach)
    if key == "rmsprop":
        return torch.optim.RMSprop(plist, foreach=foreach)
    if key == "adam":
        return torch.optim.Adam(plist, foreach=foreach)
    if key == "adamw":
        return torch.optim.AdamW(plist, foreach=foreach)
    raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZER_STATES)}")


FUSED = ("sgd", "sgd_momentum", "adagrad", "adam", "adamw")


def _fused(key: str, plist: list[torch.Tensor]) -> torch.optim.Optimizer:
    if key == "sgd":
        return torch.optim.SGD(plist, lr=1e-3, fused=True)
    if key == "sgd_momentum":
        return torch.optim.SGD(plist, lr=1e-3, momentum=0.9, fused=True)
    if key == "adagrad":
        return torch.optim.Adagrad(plist, fused=True)
    if key == "adam":
        return torch.optim.Adam(plist, fused=True)
    return torch.optim.AdamW(plist, fused=True)
