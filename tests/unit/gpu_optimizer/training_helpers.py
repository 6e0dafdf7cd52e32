"""A tiny model and data set the training-kit tests share (kept small: every test runs in seconds)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import TensorDataset

from gpu_optimizer.training import TrainConfig

FEATURES, CLASSES = 8, 3


def make_data(n: int = 256, seed: int = 0) -> TensorDataset:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, FEATURES, generator=gen)
    w = torch.randn(FEATURES, CLASSES, generator=gen)
    y = (x @ w).argmax(dim=1)
    return TensorDataset(x, y)


def make_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(FEATURES, 16), torch.nn.ReLU(), torch.nn.Dropout(0.1), torch.nn.Linear(16, CLASSES)
    )


def ce_loss(model: torch.nn.Module, batch: Any) -> torch.Tensor:
    x, y = batch
    return torch.nn.functional.cross_entropy(model(x), y)


def adam(params: Any) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=1e-2)


def warmup(opt: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 5))


def config(tmp: Path | None, **overrides: Any) -> TrainConfig:
    base: dict[str, Any] = {
        "run_name": "tiny",
        "max_steps": 24,
        "global_batch_size": 16,
        "seed": 3,
        "checkpoint_dir": tmp / "ckpt" if tmp else None,
        "log_path": tmp / "run.jsonl" if tmp else None,
    }
    base.update(overrides)
    return TrainConfig(**base)


def params_of(model: torch.nn.Module) -> list[torch.Tensor]:
    inner = getattr(model, "module", model)
    return [p.detach().clone() for p in inner.parameters()]
