"""Sharded checkpoints: two gloo processes save a DTensor-sharded state through DCP and load it back."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Shard, distribute_tensor

from gpu_optimizer.checkpoints import CheckpointCorruptError, CheckpointManager
from gpu_optimizer.checkpoints.manifest import MANIFEST_NAME

WORLD = 2


def _full_state() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {"weight": torch.randn(8, 6, generator=gen), "bias": torch.randn(6, generator=gen)}


def _worker(rank: int, root: str, store: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        from gpu_optimizer.checkpoints.sharded import load_sharded, save_sharded

        mesh = init_device_mesh("cpu", (WORLD,))
        full = _full_state()
        state = {
            "weight": distribute_tensor(full["weight"], mesh, [Shard(0)]),  # rows split over ranks
            "bias": full["bias"].clone(),  # replicated
            "step": torch.tensor(7),
        }
        manager = CheckpointManager(Path(root), "dist")
        info = save_sharded(manager, 7, state, metrics={"loss": 0.25})
        assert info.extra["world_size"] == WORLD

        target = {
            "weight": distribute_tensor(torch.zeros(8, 6), mesh, [Shard(0)]),
            "bias": torch.zeros(6),
            "step": torch.tensor(0),
        }
        load_sharded(manager, info.name, target)
        assert torch.equal(target["weight"].full_tensor(), full["weight"])
        assert torch.equal(target["weight"].to_local(), full["weight"].chunk(WORLD)[rank])
        assert torch.equal(target["bias"], full["bias"])
        assert int(target["step"]) == 7
        dist.barrier()
    finally:
        dist.destroy_process_group()
    # Done and checked: leave without the interpreter's teardown, where gloo's threads once
    # aborted a rank ("terminate called without an active exception", 1 run in about 30) after
    # every assertion had passed.  A failed assertion above still raises and fails the spawn.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@pytest.mark.slow
def test_two_gloo_ranks_save_and_load_a_sharded_checkpoint(tmp_path: Path) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_worker, args=(str(tmp_path), str(tmp_path / "store")), nprocs=WORLD, join=True)

    manager = CheckpointManager(tmp_path, "dist")
    (info,) = manager.list()
    assert (info.kind, info.step, info.metrics) == ("dcp", 7, {"loss": 0.25})
    assert manager.verify(info).ok
    manifest = json.loads((info.path / MANIFEST_NAME).read_text())
    assert ".metadata" in manifest["files"]
    assert sum(name.endswith(".distcp") for name in manifest["files"]) == WORLD
    assert not [p for p in (tmp_path / "dist").iterdir() if p.name.startswith(".")]
    # A single-process load of a sharded checkpoint is refused, and resume skips it.
    with pytest.raises(CheckpointCorruptError):
        manager.load(info, torch.nn.Linear(6, 8))
    assert manager.resume_latest(torch.nn.Linear(6, 8)) is None
