"""CheckpointManager with CUDA state: pinned async snapshot, CUDA RNG, map_location."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from gpu_optimizer.checkpoints import CheckpointManager


def test_async_save_of_cuda_state_round_trips(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Linear(64, 64).cuda()
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(8, 64, device="cuda")).sum().backward()
    optimizer.step()
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    cuda_rng = torch.cuda.get_rng_state()
    manager = CheckpointManager(tmp_path, "cuda")
    manager.save_async(1, model, optimizer)
    with torch.no_grad():
        model.weight.add_(1.0)  # mutate right away: the snapshot was taken already
    torch.randn(10, device="cuda")  # advance the CUDA generator
    manager.wait()

    fresh = nn.Linear(64, 64).cuda()
    fresh_opt = torch.optim.AdamW(fresh.parameters())
    info = manager.resume_latest(fresh, fresh_opt, map_location="cuda")
    assert info is not None
    for key, value in fresh.state_dict().items():
        assert value.is_cuda
        assert torch.equal(value, expected[key])
    assert torch.equal(torch.cuda.get_rng_state(), cuda_rng)
    assert all(s["exp_avg"].is_cuda for s in fresh_opt.state.values())
