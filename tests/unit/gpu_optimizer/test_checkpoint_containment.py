"""Attacks on the checkpoint root through the manager: planted symbolic links and tampered manifests.

Every link points at real files outside a temporary root; the assertion is always that those files
are still there, unread and undeleted, and that the checkpoint is reported invalid instead.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from gpu_optimizer.checkpoints import CheckpointCorruptError, CheckpointManager, UnsafePathError
from gpu_optimizer.checkpoints.catalog import CheckpointCatalog
from gpu_optimizer.checkpoints.manifest import MANIFEST_NAME


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Linear(8, 4)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes, to prove nothing there changed."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """Real checkpoints outside the root, the target of every planted link."""
    base = tmp_path / "outside"
    manager = CheckpointManager(base, "victim", keep_last=None)
    for step in range(3):
        manager.save(step, model(), metrics={"loss": 1.0 - step / 10})
    return base / "victim"


def test_a_run_directory_linked_outside_is_refused_and_nothing_outside_is_deleted(
    tmp_path: Path, outside: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "linked").symlink_to(outside, target_is_directory=True)
    before = snapshot(outside)

    with pytest.raises(UnsafePathError):
        CheckpointManager(root, "linked", keep_last=1)  # its first save would prune outside
    catalog = CheckpointCatalog(root)
    assert catalog.runs() == []
    for attempt in (
        lambda: catalog.prune("linked", keep_last=1),
        lambda: catalog.delete("linked", "step-000000000", force=True),
        lambda: catalog.list("linked"),
    ):
        with pytest.raises(UnsafePathError):
            attempt()
    assert snapshot(outside) == before


def test_a_checkpoint_directory_linked_outside_is_never_read_pruned_or_deleted(
    tmp_path: Path, outside: Path
) -> None:
    root = tmp_path / "root"
    manager = CheckpointManager(root, "run", keep_last=1)
    manager.save(10, model())
    (root / "run" / "step-000000005").symlink_to(outside / "step-000000001", target_is_directory=True)
    before = snapshot(outside)

    assert [i.step for i in manager.list()] == [10]
    manager.save(11, model())  # prunes to one checkpoint: the link is not one of them
    manager.wait()
    with pytest.raises(UnsafePathError):
        manager.info("step-000000005")
    catalog = CheckpointCatalog(root)
    scan = catalog.scan("run")
    assert [i.step for i in scan.valid] == [11]
    assert "symbolic link" in scan.invalid["step-000000005"]
    with pytest.raises(UnsafePathError):
        catalog.verify("run", "step-000000005")
    with pytest.raises(UnsafePathError):
        catalog.delete("run", "step-000000005", force=True)
    assert snapshot(outside) == before
    assert (root / "run" / "step-000000005").is_symlink()


def test_a_file_replaced_by_a_link_to_identical_bytes_does_not_verify(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path / "root", "run")
    info = manager.save(1, model())
    inside = info.path / "model.safetensors"
    copy = tmp_path / "copy.safetensors"
    shutil.copyfile(inside, copy)
    inside.unlink()
    inside.symlink_to(copy)  # same bytes: following the link would verify

    result = manager.verify(info.name)
    assert not result.ok
    assert result.mismatched == ["model.safetensors"]
    with pytest.raises(CheckpointCorruptError, match="symbolic link"):
        manager.load(info.name, model())
    assert manager.resume_latest(model()) is None


Tamper = Callable[[dict[str, Any]], None]


def _set(key: str, value: object) -> Tamper:
    def tamper(body: dict[str, Any]) -> None:
        body[key] = value

    return tamper


def _add_file(name: str) -> Tamper:
    def tamper(body: dict[str, Any]) -> None:
        body["files"][name] = {body["hash"]: "0" * 64, "size": 1}

    return tamper


def _file_field(key: str, value: object) -> Tamper:
    def tamper(body: dict[str, Any]) -> None:
        body["files"]["model.safetensors"][key] = value

    return tamper


TAMPERED: dict[str, tuple[Tamper, str]] = {
    "step 1e400": (_set("step", float("inf")), "step"),
    "step negative": (_set("step", -3), "step"),
    "step a string": (_set("step", "3"), "step"),
    "step a boolean": (_set("step", True), "step"),
    "epoch a fraction": (_set("epoch", 1.5), "epoch"),
    "metric a string": (_set("metrics", {"loss": "low"}), "metrics"),
    "metric a huge integer": (_set("metrics", {"loss": 10**400}), "metrics"),
    "absolute file": (_add_file("/etc/hostname"), "files"),
    "escaping file": (_add_file("../../outside-secret"), "files"),
    "nested file": (_add_file("sub/model.safetensors"), "files"),
    "manifest as file": (_add_file(MANIFEST_NAME), "files"),
    "size 1e400": (_file_field("size", float("inf")), "size"),
    "digest not hex": (_file_field("blake3", "zz" * 32), "digest"),
    "unknown hash": (_set("hash", "md5"), "hash"),
    "unknown format": (_set("format", "something/9"), "format"),
    "components not strings": (_set("components", [1, 2]), "components"),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_a_tampered_manifest_is_invalid_and_resume_falls_back(tmp_path: Path, case: str) -> None:
    tamper, field = TAMPERED[case]
    (tmp_path / "outside-secret").write_bytes(b"secret")
    root = tmp_path / "a" / "b"
    manager = CheckpointManager(root, "run", keep_last=None)
    good = manager.save(1, model())
    bad = manager.save(2, model())
    manifest = bad.path / MANIFEST_NAME
    body = json.loads(manifest.read_text())
    tamper(body)
    manifest.write_text(json.dumps(body))  # Python writes inf as Infinity; 10**400 as digits

    assert [i.name for i in manager.list()] == [good.name]
    result = manager.verify(bad.name)
    assert not result.ok
    assert result.error is not None
    assert field in result.error
    assert "secret" not in result.error
    assert "hostname" not in result.error
    assert (result.mismatched, result.missing) == ([], [])  # nothing reported about outside paths
    info = manager.resume_latest(model())
    assert info is not None
    assert info.name == good.name
    scan = CheckpointCatalog(root).scan("run")
    assert [i.name for i in scan.valid] == [good.name]
    assert field in scan.invalid[bad.name]
    CheckpointCatalog(root).delete("run", bad.name, force=True)
    assert not bad.path.exists()
    assert (tmp_path / "outside-secret").read_bytes() == b"secret"


def test_step_written_as_1e400_in_the_file_is_invalid(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, "run", keep_last=None)
    info = manager.save(1, model())
    manifest = info.path / MANIFEST_NAME
    manifest.write_text(manifest.read_text().replace('"step": 1,', '"step": 1e400,'))
    assert '"step": 1e400' in manifest.read_text()
    assert manager.list() == []
    error = manager.verify(info.name).error
    assert error is not None
    assert "step" in error


def test_prune_ranks_nan_and_missing_metrics_last(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, "run", keep_last=0, keep_best=1, best_metric="loss", mode="min")
    for step, loss in enumerate([0.5, float("nan"), 0.3, 0.9]):
        manager.save(step, model(), metrics={"loss": loss})
    manager.save(4, model(), metrics={"acc": 0.1})  # no loss at all
    assert [(i.step, i.metrics["loss"]) for i in manager.list()] == [(2, 0.3)]
    best_max = CheckpointManager(tmp_path, "max", keep_last=0, keep_best=1, best_metric="acc", mode="max")
    for step, acc in enumerate([0.5, float("nan"), 0.7, float("inf")]):
        best_max.save(step, model(), metrics={"acc": acc})
    assert [i.step for i in best_max.list()] == [2]
