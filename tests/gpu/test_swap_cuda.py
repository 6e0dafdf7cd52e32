"""TensorSwapper on CUDA: pinned host tier, prefetch on a side stream, offloaded activations."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from gpu_optimizer.swapping import TensorSwapper, Tier, offload_activations

MIB = 1 << 20


def digest(tensor: torch.Tensor) -> str:
    return hashlib.sha256(
        tensor.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    ).hexdigest()


def test_cuda_tiers_keep_exact_bytes_and_use_pinned_memory(tmp_path: Path) -> None:
    gen = torch.Generator(device="cuda").manual_seed(0)
    data = {f"t{i}": torch.randn(MIB // 4, device="cuda", generator=gen) for i in range(6)}
    hashes = {k: digest(v) for k, v in data.items()}
    with TensorSwapper(device_budget=2 * MIB, host_budget=2 * MIB, swap_dir=tmp_path) as swapper:
        for name, tensor in data.items():
            swapper.register(name, tensor.clone())
        host = [n for n in data if swapper.tier_of(n) is Tier.HOST]
        assert host
        assert swapper._tiers[Tier.HOST][host[0]].data.is_pinned()
        assert swapper.prefetch(["t0", "t2"]) == ["t0", "t2"]
        # Compute on the default stream while the copies run on the side stream.
        busy = torch.randn(2048, 2048, device="cuda")
        busy = busy @ busy
        for _ in range(3):
            for name in data:
                out = swapper.get(name)
                assert out.is_cuda
                assert digest(out) == hashes[name]


def test_offloaded_cuda_step_has_identical_gradients() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 512), nn.GELU(), nn.Linear(512, 10)).cuda()
    x = torch.randn(64, 256, device="cuda")
    model(x).square().mean().backward()
    reference = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    with offload_activations(host_budget=64 * MIB) as swapper:
        model(x).square().mean().backward()
        assert swapper.stats()["tiers"]["device"]["swaps_in"] > 0
    for p, ref in zip(model.parameters(), reference, strict=True):
        assert torch.equal(p.grad, ref)
