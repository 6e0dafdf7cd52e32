"""Read-only view of a checkpoint root shared by the service and the manager.

Unlike ``CheckpointManager``, opening a catalog never touches temp dirs: a service listing
runs must not remove the half-written save of a training process that is still running.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from pathlib import Path

from gpu_optimizer.checkpoints.atomic import delete_tree, fsync_dir, remove_tree, retire_tree
from gpu_optimizer.checkpoints.errors import CheckpointCorruptError, CheckpointNotFoundError
from gpu_optimizer.checkpoints.manifest import (
    MANIFEST_NAME,
    CheckpointInfo,
    VerifyResult,
    read_manifest,
    verify_files,
)
from gpu_optimizer.checkpoints.names import validate_name
from gpu_optimizer.checkpoints.retention import Mode, select_kept


def scan_run(run_dir: Path) -> list[CheckpointInfo]:
    """Checkpoints of a run with a readable manifest, oldest first; temp and broken dirs are skipped."""
    if not run_dir.is_dir():
        return []
    infos = []
    for entry in run_dir.iterdir():
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        try:
            infos.append(read_manifest(entry))
        except CheckpointCorruptError:
            continue
    return sorted(infos, key=lambda i: (i.step, i.created_at))


def remove_checkpoint(info: CheckpointInfo, delete: Callable[[Path], None] = delete_tree) -> None:
    """Delete a checkpoint: its manifest goes first, so a half-deleted directory is never loaded.

    Once this returns the checkpoint is gone for every reader; ``delete`` gets the retired
    directory to delete (a caller may hand it to a background thread).
    """
    (info.path / MANIFEST_NAME).unlink(missing_ok=True)
    fsync_dir(info.path)
    trash = retire_tree(info.path)
    if trash is not None:
        delete(trash)


def prune_run(
    infos: list[CheckpointInfo],
    keep_last: int | None,
    keep_best: int,
    best_metric: str | None,
    mode: Mode,
    delete: Callable[[Path], None] = delete_tree,
) -> list[str]:
    """Remove the checkpoints outside the retention policy; returns the names removed."""
    kept = select_kept(infos, keep_last, keep_best, best_metric, mode)
    removed = []
    for info in infos:
        if info.name not in kept:
            remove_checkpoint(info, delete)
            removed.append(info.name)
    return removed


class CheckpointCatalog:
    """Runs and checkpoints under one root; every name is validated so no path leaves the root."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def runs(self) -> builtins.list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def run_dir(self, run: str) -> Path:
        path = self.root / validate_name(run, "run")
        if not path.is_dir():
            raise CheckpointNotFoundError(f"no run {run!r} under the checkpoint root")
        return path

    def list(self, run: str) -> list[CheckpointInfo]:
        return scan_run(self.run_dir(run))

    def info(self, run: str, name: str) -> CheckpointInfo:
        path = self.run_dir(run) / validate_name(name)
        if not path.is_dir():
            raise CheckpointNotFoundError(f"no checkpoint {name!r} in run {run!r}")
        return read_manifest(path)

    def verify(self, run: str, name: str) -> VerifyResult:
        try:
            info = self.info(run, name)
        except CheckpointCorruptError as exc:
            return VerifyResult(name, False, error=str(exc))
        return verify_files(info)

    def delete(self, run: str, name: str, force: bool = False) -> None:
        """Delete one checkpoint.

        A directory without a valid manifest may be a save that is being finished right now, so it
        is removed only with ``force``; otherwise CheckpointCorruptError says why not.
        """
        path = self.run_dir(run) / validate_name(name)
        if not path.is_dir():
            raise CheckpointNotFoundError(f"no checkpoint {name!r} in run {run!r}")
        try:
            info = self.info(run, name)
        except CheckpointCorruptError:
            if not force:
                raise
            remove_tree(path)
            return
        remove_checkpoint(info)

    def prune(
        self,
        run: str,
        keep_last: int | None,
        keep_best: int = 0,
        best_metric: str | None = None,
        mode: Mode = "min",
    ) -> builtins.list[str]:
        return prune_run(self.list(run), keep_last, keep_best, best_metric, mode)
