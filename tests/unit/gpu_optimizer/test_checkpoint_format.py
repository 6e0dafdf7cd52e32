"""Manifest formats: new checkpoints name BLAKE3; format-1 checkpoints (SHA-256) still load.

``fixtures/checkpoint_format1`` was written by the code before BLAKE3 (commit 0aee9f8): a
``Linear(4, 3)`` with AdamW state after one step, metrics ``{"loss": 0.25}``, epoch 2.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import blake3
import pytest
import torch
from safetensors.torch import load_file

from gpu_optimizer.checkpoints import CheckpointCorruptError, CheckpointManager
from gpu_optimizer.checkpoints.catalog import CheckpointCatalog
from gpu_optimizer.checkpoints.manifest import MANIFEST_NAME

FIXTURE = Path(__file__).parent / "fixtures" / "checkpoint_format1"
OLD = "step-000000007"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    shutil.copytree(FIXTURE, tmp_path / "root")
    return tmp_path / "root"


def fresh() -> tuple[torch.nn.Linear, torch.optim.AdamW]:
    torch.manual_seed(99)
    model = torch.nn.Linear(4, 3)
    return model, torch.optim.AdamW(model.parameters(), lr=0.1)


def test_new_manifests_name_blake3_and_hold_each_files_blake3(tmp_path: Path) -> None:
    info = CheckpointManager(tmp_path, "run").save(1, *fresh())
    body = json.loads((info.path / MANIFEST_NAME).read_text())
    assert (body["format"], body["hash"]) == ("gpu_optimizer.checkpoint/2", "blake3")
    assert info.hash_algorithm == "blake3"
    for name, entry in body["files"].items():
        assert set(entry) == {"blake3", "size"}
        assert entry["blake3"] == blake3.blake3((info.path / name).read_bytes()).hexdigest()


def test_a_format1_checkpoint_verifies_and_loads(root: Path) -> None:
    manager = CheckpointManager(root, "run", keep_last=None)
    (info,) = manager.list()
    assert (info.name, info.step, info.epoch, info.metrics) == (OLD, 7, 2, {"loss": 0.25})
    assert info.hash_algorithm == "sha256"
    assert manager.verify(OLD).ok
    model, optimizer = fresh()
    manager.load(OLD, model, optimizer)
    stored = load_file(str(info.path / "model.safetensors"))  # read by safetensors itself
    assert torch.equal(model.weight, stored["weight"])
    assert torch.equal(model.bias, stored["bias"])
    moments = load_file(str(info.path / "optimizer.safetensors"))
    loaded = optimizer.state_dict()["state"][0]["exp_avg"]
    assert any(torch.equal(loaded, t) for t in moments.values())
    assert manager.read_component(OLD, "extra") == {"note": "format 1"}
    assert CheckpointCatalog(root).verify("run", OLD).ok


def test_a_flipped_byte_in_a_format1_checkpoint_is_caught_by_sha256(root: Path) -> None:
    victim = root / "run" / OLD / "model.safetensors"
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0x01
    victim.write_bytes(bytes(data))
    manager = CheckpointManager(root, "run", keep_last=None)
    assert manager.verify(OLD).mismatched == ["model.safetensors"]
    with pytest.raises(CheckpointCorruptError, match="sha256"):
        manager.load(OLD, fresh()[0])


def test_old_and_new_checkpoints_live_in_one_run(root: Path) -> None:
    manager = CheckpointManager(root, "run", keep_last=None)
    model, optimizer = fresh()
    manager.save(8, model, optimizer)
    assert [(i.step, i.hash_algorithm) for i in manager.list()] == [(7, "sha256"), (8, "blake3")]
    assert all(manager.verify(i).ok for i in manager.list())
    restored, restored_optimizer = fresh()
    info = manager.resume_latest(restored, restored_optimizer)
    assert info is not None
    assert info.step == 8
