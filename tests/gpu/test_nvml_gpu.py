"""GPU fields against the real device (runs only where CUDA is available)."""

from __future__ import annotations

import os

import torch

from gpu_optimizer.devices import read_snapshot


def test_snapshot_fields_match_torch() -> None:
    snap = read_snapshot()
    assert snap.mode == "gpu"
    assert len(snap.gpus) == torch.cuda.device_count()
    props = torch.cuda.get_device_properties(0)
    g = snap.gpus[0]
    assert abs(g.memory_total_bytes - props.total_memory) / props.total_memory < 0.05
    assert g.temperature_celsius is not None
    assert 10 < g.temperature_celsius < 110
    assert g.power_draw_watts is None or g.power_draw_watts > 0
    assert g.memory_used_bytes + g.memory_free_bytes <= g.memory_total_bytes


def test_this_process_memory_is_reported() -> None:
    block = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    torch.cuda.synchronize()
    snap = read_snapshot()
    mine = [p for g in snap.gpus for p in g.processes if p.pid == os.getpid()]
    assert mine, "NVML must list this process"
    if mine[0].used_memory_bytes is not None:
        assert mine[0].used_memory_bytes >= 1 << 30
    del block
