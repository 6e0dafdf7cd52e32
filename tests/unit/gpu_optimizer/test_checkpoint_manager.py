"""CheckpointManager: round trip to a bit-identical next step, verification, retention, names, async."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from gpu_optimizer.checkpoints import (
    CheckpointCorruptError,
    CheckpointError,
    CheckpointExistsError,
    CheckpointManager,
    CheckpointNotFoundError,
    InvalidCheckpointNameError,
    UnsupportedStateError,
)
from gpu_optimizer.checkpoints.manifest import MANIFEST_NAME


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.GELU(), nn.Dropout(0.3))
        self.head = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


Trainer = tuple[Net, torch.optim.AdamW, torch.optim.lr_scheduler.LRScheduler]


def make_trainer(seed: int) -> Trainer:
    torch.manual_seed(seed)
    model = Net()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.05, total_steps=50)
    return model, optimizer, scheduler


def train_step(trainer: Trainer) -> None:
    """One step that draws from every RNG the checkpoint restores (torch, numpy, random)."""
    model, optimizer, scheduler = trainer
    x = torch.randn(8, 16) * (1.0 + float(np.random.rand())) + random.random()
    y = torch.randn(8, 4)
    optimizer.zero_grad()
    nn.functional.mse_loss(model(x), y).backward()
    optimizer.step()
    scheduler.step()


def state_of(trainer: Trainer) -> list[torch.Tensor]:
    model, optimizer, _ = trainer
    tensors = [t.clone() for t in model.state_dict().values()]
    for s in optimizer.state_dict()["state"].values():
        tensors += [s["exp_avg"].clone(), s["exp_avg_sq"].clone(), s["step"].clone()]
    return tensors


def assert_identical(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)


@pytest.fixture
def trained() -> Trainer:
    trainer = make_trainer(0)
    for _ in range(3):
        train_step(trainer)
    return trainer


def test_round_trip_next_step_is_bit_identical(tmp_path: Path, trained: Trainer) -> None:
    manager = CheckpointManager(tmp_path, "run")
    manager.save(3, *trained, metrics={"loss": 0.5}, epoch=1, config_digest="abc", extra={"note": [1, 2]})
    scheduler_state = trained[2].state_dict()
    train_step(trained)
    expected = state_of(trained)

    fresh = make_trainer(123)
    train_step(fresh)  # different weights, optimizer state, scheduler position and RNG
    info = manager.resume_latest(*fresh)
    assert info is not None
    assert (info.step, info.epoch, info.metrics, info.config_digest) == (3, 1, {"loss": 0.5}, "abc")
    assert fresh[2].state_dict() == scheduler_state
    train_step(fresh)
    assert_identical(state_of(fresh), expected)
    assert manager.read_component(info, "extra") == {"note": [1, 2]}


def test_files_are_standard_safetensors_and_manifest_lists_them(tmp_path: Path, trained: Trainer) -> None:
    info = CheckpointManager(tmp_path, "run").save(3, *trained)
    model_tensors = load_file(str(info.path / "model.safetensors"))
    for key, value in trained[0].state_dict().items():
        assert torch.equal(model_tensors[key], value)
    manifest = json.loads((info.path / MANIFEST_NAME).read_text())
    on_disk = {p.name for p in info.path.iterdir()} - {MANIFEST_NAME}
    assert set(manifest["files"]) == on_disk
    assert manifest["versions"]["torch"] == torch.__version__
    for name, entry in manifest["files"].items():
        assert (info.path / name).stat().st_size == entry["size"]


def test_corrupt_byte_fails_verify_and_resume_falls_back(tmp_path: Path, trained: Trainer) -> None:
    manager = CheckpointManager(tmp_path, "run")
    first = manager.save(3, *trained)
    expected = state_of(trained)
    train_step(trained)
    second = manager.save(4, *trained)
    target = second.path / "optimizer.safetensors"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))

    result = manager.verify(second.name)
    assert not result.ok
    assert result.mismatched == ["optimizer.safetensors"]
    assert manager.verify(first.name).ok
    with pytest.raises(CheckpointCorruptError):
        manager.load(second.name, *make_trainer(5))

    fresh = make_trainer(7)
    info = manager.resume_latest(*fresh)
    assert info is not None
    assert info.name == first.name
    assert_identical(state_of(fresh), expected)


def test_missing_file_and_missing_manifest(tmp_path: Path, trained: Trainer) -> None:
    manager = CheckpointManager(tmp_path, "run")
    info = manager.save(3, *trained)
    (info.path / "rng.safetensors").unlink()
    assert manager.verify(info.name).missing == ["rng.safetensors"]
    (info.path / MANIFEST_NAME).unlink()
    assert manager.list() == []
    result = manager.verify(info.name)
    assert not result.ok
    assert result.error is not None
    assert "manifest" in result.error
    assert manager.resume_latest(*make_trainer(1)) is None


def test_retention_keeps_last_n_and_best_k(tmp_path: Path, trained: Trainer) -> None:
    manager = CheckpointManager(tmp_path, "run", keep_last=2, keep_best=2, best_metric="loss", mode="min")
    losses = [0.9, 0.2, 0.7, 0.1, 0.8, 0.6, 0.5]
    for step, loss in enumerate(losses):
        manager.save(step, trained[0], metrics={"loss": loss})
    kept = {i.step for i in manager.list()}
    assert kept == {5, 6} | {3, 1}  # last two, and the two lowest losses
    manager.wait()  # the pruned checkpoints' files are deleted in the background
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [f"step-{s:09d}" for s in sorted(kept)]


def test_retention_max_mode_and_keep_all(tmp_path: Path, trained: Trainer) -> None:
    best = CheckpointManager(tmp_path, "best", keep_last=0, keep_best=1, best_metric="acc", mode="max")
    for step, acc in enumerate([0.5, 0.9, 0.7]):
        best.save(step, trained[0], metrics={"acc": acc})
    assert [i.step for i in best.list()] == [1]
    everything = CheckpointManager(tmp_path, "all", keep_last=None)
    for step in range(5):
        everything.save(step, trained[0])
    assert len(everything.list()) == 5


@pytest.mark.parametrize("name", ["..", "../x", "a/b", "/abs", "a\\b", ".hidden", "", "x" * 200, "a b"])
def test_names_that_could_escape_are_rejected(tmp_path: Path, trained: Trainer, name: str) -> None:
    manager = CheckpointManager(tmp_path, "run")
    with pytest.raises(InvalidCheckpointNameError):
        manager.save(1, trained[0], name=name)
    with pytest.raises(InvalidCheckpointNameError):
        manager.load(name, trained[0])
    with pytest.raises(InvalidCheckpointNameError):
        CheckpointManager(tmp_path, name)
    assert list((tmp_path / "run").iterdir()) == []


def test_bad_arguments_raise_clear_errors(tmp_path: Path, trained: Trainer) -> None:
    manager = CheckpointManager(tmp_path, "run")
    manager.save(1, trained[0])
    with pytest.raises(CheckpointExistsError):
        manager.save(1, trained[0])
    with pytest.raises(CheckpointNotFoundError):
        manager.load("step-000000099", trained[0])
    with pytest.raises(ValueError, match="step"):
        manager.save(-1, trained[0])
    with pytest.raises(UnsupportedStateError, match="pickle"):
        manager.save(2, trained[0], extra={"fn": object()})
    with pytest.raises(ValueError, match="best_metric"):
        CheckpointManager(tmp_path, "run", keep_best=1)
    with pytest.raises(KeyError, match="optimizer"):
        manager.load("step-000000001", trained[0], optimizer=trained[1])


def test_async_save_matches_sync_and_survives_mutation(tmp_path: Path, trained: Trainer) -> None:
    sync = CheckpointManager(tmp_path, "sync")
    asyn = CheckpointManager(tmp_path, "async")
    sync_info = sync.save(3, *trained)
    expected = state_of(trained)
    rng_state = torch.get_rng_state()
    asyn.save_async(3, *trained)
    # The loop goes on at once: parameters and optimizer state change while the write runs.
    with torch.no_grad():
        for p in trained[0].parameters():
            p.add_(1.0)
    train_step(trained)
    while asyn.busy():  # idle without a blocking call means written, manifest and all
        time.sleep(0.001)
    (async_info,) = asyn.list()
    asyn.wait()
    for file, digest in sync_info.files.items():
        if file != "rng.safetensors":
            assert async_info.files[file] == digest, file
    fresh = make_trainer(9)
    asyn.load(async_info, *fresh)
    assert_identical(state_of(fresh), expected)
    assert torch.equal(torch.get_rng_state(), rng_state)


def test_async_error_surfaces_on_next_call(tmp_path: Path, trained: Trainer) -> None:
    manager = CheckpointManager(tmp_path, "run")
    manager.save_async(1, trained[0])
    # complex128 has no safetensors dtype: the snapshot succeeds, the background write fails.
    manager.save_async(2, trained[0], extra={"z": torch.zeros(2, dtype=torch.complex128)})
    with pytest.raises(CheckpointError, match="background") as caught:
        manager.save(3, trained[0])
    assert isinstance(caught.value.__cause__, UnsupportedStateError)
    manager.wait()  # reported once
    assert [i.step for i in manager.list()] == [1]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["step-000000001"]


def test_stale_temp_dirs_are_removed_and_ignored(tmp_path: Path, trained: Trainer) -> None:
    manager = CheckpointManager(tmp_path, "run")
    manager.save(1, trained[0])
    stale = tmp_path / "run" / ".tmp-step-000000002-dead"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"partial")
    assert [i.step for i in manager.list()] == [1]
    CheckpointManager(tmp_path, "run")
    assert not stale.exists()


def test_a_forked_child_still_deletes_pruned_checkpoints(tmp_path: Path, trained: Trainer) -> None:
    parent = CheckpointManager(tmp_path, "parent", keep_last=1)
    for step in range(2):
        parent.save(step, trained[0])  # the deleting thread has run in this process
    parent.wait()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            child = CheckpointManager(tmp_path, "child", keep_last=1)
            for step in range(2):
                child.save(step, trained[0])
            child.wait()
            code = 0 if sorted(p.name for p in (tmp_path / "child").iterdir()) == ["step-000000001"] else 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + 60
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if done[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the child hung waiting for its deletions")
    assert os.waitstatus_to_exitcode(done[1]) == 0
