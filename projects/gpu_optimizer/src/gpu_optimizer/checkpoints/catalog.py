"""Read-only view of a checkpoint root shared by the service and the manager.

Unlike ``CheckpointManager``, opening a catalog never touches temp dirs: a service listing
runs must not remove the half-written save of a training process that is still running.

Nothing below the root is followed through a symbolic link (see ``paths``): a linked run or
checkpoint is reported, never read, and never deleted through.
"""

from __future__ import annotations

import builtins
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gpu_optimizer.checkpoints.atomic import delete_tree, remove_tree, retire_tree
from gpu_optimizer.checkpoints.errors import CheckpointCorruptError, CheckpointNotFoundError
from gpu_optimizer.checkpoints.manifest import (
    MANIFEST_NAME,
    CheckpointInfo,
    VerifyResult,
    read_manifest,
    verify_files,
)
from gpu_optimizer.checkpoints.names import validate_name
from gpu_optimizer.checkpoints.paths import check_contained, is_real_dir, open_dir
from gpu_optimizer.checkpoints.retention import Mode, select_kept


@dataclass(frozen=True)
class RunScan:
    """A run's checkpoints with a valid manifest (oldest first), and the others with the reason."""

    valid: list[CheckpointInfo]
    invalid: dict[str, str]


def scan_run_report(run_dir: Path) -> RunScan:
    """Every checkpoint directory of a run: valid ones oldest first, invalid ones with the reason.

    Hidden entries (temp and trash of saves and prunes) are skipped; a symbolic link is reported
    invalid without being followed.
    """
    valid: list[CheckpointInfo] = []
    invalid: dict[str, str] = {}
    if not is_real_dir(run_dir):
        return RunScan(valid, invalid)
    with os.scandir(run_dir) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_symlink():
                invalid[entry.name] = "a symbolic link; links under the checkpoint root are not followed"
            elif entry.is_dir(follow_symlinks=False):
                try:
                    valid.append(read_manifest(Path(entry.path)))
                except CheckpointCorruptError as exc:
                    invalid[entry.name] = str(exc)
    return RunScan(sorted(valid, key=lambda i: (i.step, i.created_at)), dict(sorted(invalid.items())))


def scan_run(run_dir: Path) -> list[CheckpointInfo]:
    """Checkpoints of a run with a valid manifest, oldest first; temp, broken and linked dirs are skipped."""
    return scan_run_report(run_dir).valid


def remove_checkpoint(info: CheckpointInfo, delete: Callable[[Path], None] = delete_tree) -> None:
    """Delete a checkpoint: its manifest goes first, so a half-deleted directory is never loaded.

    Once this returns the checkpoint is gone for every reader; ``delete`` gets the retired
    directory to delete (a caller may hand it to a background thread). The run and checkpoint
    directories are opened without following links, so a link swapped in since the checkpoint
    was listed makes this raise ``UnsafePathError`` instead of deleting outside the root.
    """
    run_dir = info.path.parent
    with open_dir(run_dir.parent, run_dir.name, info.path.name) as checkpoint:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(MANIFEST_NAME, dir_fd=checkpoint)
        os.fsync(checkpoint)
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
    """Runs and checkpoints under one root; every name is validated and every path checked for
    containment (no link below the root) before it is read or deleted."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def runs(self) -> builtins.list[str]:
        """Run directories under the root (links to directories are not runs)."""
        if not self.root.is_dir():
            return []
        with os.scandir(self.root) as entries:
            return sorted(
                e.name for e in entries if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)
            )

    def run_dir(self, run: str) -> Path:
        """The directory of ``run``.

        Raises:
            InvalidCheckpointNameError, CheckpointNotFoundError; UnsafePathError: a link.
        """
        path = self.root / validate_name(run, "run")
        try:
            check_contained(self.root, path)
        except CheckpointNotFoundError as exc:
            raise CheckpointNotFoundError(f"no run {run!r} under the checkpoint root") from exc
        if not is_real_dir(path):
            raise CheckpointNotFoundError(f"no run {run!r} under the checkpoint root")
        return path

    def checkpoint_dir(self, run: str, name: str) -> Path:
        """The directory of checkpoint ``name`` of ``run``, contained in the root.

        Raises:
            InvalidCheckpointNameError, CheckpointNotFoundError; UnsafePathError: a link.
        """
        path = self.run_dir(run) / validate_name(name)
        try:
            check_contained(self.root, path)
        except CheckpointNotFoundError as exc:
            raise CheckpointNotFoundError(f"no checkpoint {name!r} in run {run!r}") from exc
        if not is_real_dir(path):
            raise CheckpointNotFoundError(f"no checkpoint {name!r} in run {run!r}")
        return path

    def list(self, run: str) -> list[CheckpointInfo]:
        return scan_run(self.run_dir(run))

    def scan(self, run: str) -> RunScan:
        """Valid checkpoints of ``run`` and the invalid ones with the reason."""
        return scan_run_report(self.run_dir(run))

    def info(self, run: str, name: str) -> CheckpointInfo:
        return read_manifest(self.checkpoint_dir(run, name))

    def verify(self, run: str, name: str) -> VerifyResult:
        """Hash every file of a checkpoint; an invalid manifest is a failed result, not an error."""
        try:
            info = self.info(run, name)
        except CheckpointCorruptError as exc:
            return VerifyResult(name, False, error=str(exc))
        return verify_files(info)

    def delete(self, run: str, name: str, force: bool = False) -> None:
        """Delete one checkpoint.

        A directory without a valid manifest may be a save that is being finished right now, so it
        is removed only with ``force``; otherwise CheckpointCorruptError says why not.

        Raises:
            CheckpointNotFoundError, CheckpointCorruptError, InvalidCheckpointNameError;
            UnsafePathError: the run or checkpoint is a symbolic link (nothing is deleted).
        """
        path = self.checkpoint_dir(run, name)
        try:
            info = read_manifest(path)
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
