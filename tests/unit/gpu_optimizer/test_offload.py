"""Activation offloading: a real training step gives bit-identical gradients with and without it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from gpu_optimizer.swapping import TensorSwapper, Tier, offload_activations


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.GELU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 8 * 8, 32),
        nn.Dropout(0.2),
        nn.Tanh(),
        nn.Linear(32, 5),
    )


def grads_of_one_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)  # same dropout mask in both runs
    nn.functional.cross_entropy(model(x), y).backward()
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("tier", [Tier.HOST, Tier.DISK])
def test_offloaded_step_has_bit_identical_gradients(tmp_path: Path, tier: Tier) -> None:
    gen = torch.Generator().manual_seed(2)
    x, y = torch.randn(16, 3, 16, 16, generator=gen), torch.randint(0, 5, (16,), generator=gen)
    reference = grads_of_one_step(make_model(), x, y)

    model = make_model()
    with TensorSwapper(device_budget=2**40, host_budget=64 * 1024, swap_dir=tmp_path) as swapper:
        with offload_activations(swapper, tier=tier):
            model.zero_grad(set_to_none=True)
            torch.manual_seed(1)
            loss = nn.functional.cross_entropy(model(x), y)
        stats = swapper.stats()["tiers"]
        assert len(swapper) > 0  # activations are held by the swapper, not the graph
        assert stats["device"]["bytes"] == 0
        loss.backward()
        del loss
        assert len(swapper) == 0  # every offloaded activation was freed with the graph
        assert list(tmp_path.iterdir()) == []
    offloaded = [p.grad for p in model.parameters() if p.grad is not None]
    assert len(offloaded) == len(reference)
    for a, b in zip(offloaded, reference, strict=True):
        assert torch.equal(a, b)


def test_offload_with_its_own_swapper_and_tiny_host_budget() -> None:
    gen = torch.Generator().manual_seed(3)
    x, y = torch.randn(4, 3, 16, 16, generator=gen), torch.randint(0, 5, (4,), generator=gen)
    reference = grads_of_one_step(make_model(), x, y)
    model = make_model()
    with offload_activations(host_budget=4096) as swapper:
        model.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        nn.functional.cross_entropy(model(x), y).backward()
        moved = swapper.stats()["tiers"]
    assert moved["disk"]["swaps_out"] > 0  # the small host budget pushed some to disk
    for a, b in zip([p.grad for p in model.parameters()], reference, strict=True):
        assert torch.equal(a, b)
