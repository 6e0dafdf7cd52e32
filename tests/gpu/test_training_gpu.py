"""The training kit on CUDA: a real allocator OOM halves the micro-batch and the run goes on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import TensorDataset

from gpu_optimizer.training import TrainConfig, Trainer, init_distributed

WIDE, BATCH = 32768, 512


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(256, WIDE), torch.nn.ReLU(), torch.nn.Linear(WIDE, 10))


def _data() -> TensorDataset:
    gen = torch.Generator().manual_seed(0)
    return TensorDataset(
        torch.randn(BATCH * 4, 256, generator=gen), torch.randint(0, 10, (BATCH * 4,), generator=gen)
    )


def _loss(model: torch.nn.Module, batch: Any) -> torch.Tensor:
    x, y = batch
    return torch.nn.functional.cross_entropy(model(x), y)


def _peak(micro: int) -> int:
    """Measured peak of one SGD step at this micro-batch (the model's own memory included)."""
    model = _model().cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = _data().tensors
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    _loss(model, (x[:micro].cuda(), y[:micro].cuda())).backward()
    opt.step()
    peak = torch.cuda.max_memory_allocated()
    del model, opt
    torch.cuda.empty_cache()
    return peak


def test_real_cuda_oom_halves_the_micro_batch(tmp_path: Path) -> None:
    full, half = _peak(BATCH), _peak(BATCH // 2)
    assert half < full
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction((full + half) / 2 / total)
    try:
        config = TrainConfig(
            run_name="cuda-oom",
            max_steps=6,
            global_batch_size=BATCH,
            micro_batch_size=BATCH,
            log_path=tmp_path / "run.jsonl",
        )
        trainer = Trainer(
            config,
            _model(),
            lambda p: torch.optim.SGD(p, lr=0.1),
            _data(),
            _loss,
            ctx=init_distributed("cuda"),
        )
        result = trainer.fit()
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    assert result.steps == 6
    assert result.ooms >= 1
    assert 1 <= result.micro_batch <= BATCH // 2
    assert all(torch.isfinite(torch.tensor(v)) for v in result.losses.values())
