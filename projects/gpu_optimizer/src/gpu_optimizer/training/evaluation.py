"""The evaluation loop: every rank scores its share of the eval set; means weighted by samples."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch
import torch.distributed as dist

from gpu_optimizer.training.data import fetch, to_device
from gpu_optimizer.training.distributed import DistContext


def evaluate(
    model: torch.nn.Module,
    dataset: Any,
    eval_fn: Callable[[torch.nn.Module, Any], dict[str, float]],
    ctx: DistContext,
    batch_size: int,
    autocast: Callable[[], AbstractContextManager[Any]],
) -> dict[str, float]:
    """`eval_fn(model, batch)` returns per-batch means; the result is their sample-weighted mean."""
    indices = torch.arange(ctx.rank, len(dataset), ctx.world)
    sums: dict[str, float] = {}
    count = 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for chunk in torch.split(indices, batch_size):
                batch = to_device(fetch(dataset, chunk), ctx.device)
                with autocast():
                    values = eval_fn(model, batch)
                for key, value in values.items():
                    sums[key] = sums.get(key, 0.0) + float(value) * len(chunk)
                count += len(chunk)
    finally:
        model.train(was_training)
    keys = sorted(sums)
    totals = torch.tensor([*(sums[k] for k in keys), float(count)], dtype=torch.float64)
    if ctx.distributed:
        totals = totals.to(ctx.device)
        dist.all_reduce(totals)
    n = float(totals[-1])
    return {k: float(totals[i]) / n for i, k in enumerate(keys)}
