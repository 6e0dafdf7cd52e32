"""Durable file primitives: fsync of files and directories, atomic small-file writes, safe removal."""

from __future__ import annotations

import os
import shutil
import stat
import uuid
from pathlib import Path

from gpu_optimizer.checkpoints.errors import CheckpointNotFoundError
from gpu_optimizer.checkpoints.paths import is_real_dir, open_dir

TEMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"


def fsync_file(path: Path) -> None:
    """Flush a file's data and metadata to the disk (a symbolic link is refused, not followed)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush a directory entry table, so that renames and creations inside it survive a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: memoryview) -> None:
    """Write every byte of ``data`` to ``fd``, looping over short writes."""
    view = data.cast("B") if data.format != "B" or data.ndim != 1 else data
    written = 0
    while written < len(view):
        written += os.write(fd, view[written:])


def write_file_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the complete new one.

    The bytes go to a temp file in the same directory, which is fsynced and renamed over ``path``;
    the directory is fsynced last so the rename itself is durable.
    """
    tmp = path.with_name(f"{TEMP_PREFIX}{path.name}-{uuid.uuid4().hex}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        write_all(fd, memoryview(data))
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def retire_tree(path: Path) -> Path | None:
    """Rename a directory tree to a hidden trash name, durably; returns that name (None: no tree).

    From then on nothing looks like a checkpoint there, and the slow part, deleting the files,
    can happen later: ``clean_stale`` removes trash a crash left behind. The parent directory is
    reached without following a link below its own parent (see ``paths.open_dir``); a link at
    ``path`` itself is renamed, never followed.
    """
    trash = f"{TRASH_PREFIX}{path.name}-{uuid.uuid4().hex}"
    try:
        with open_dir(path.parent.parent, path.parent.name) as parent:
            try:
                os.rename(path.name, trash, src_dir_fd=parent, dst_dir_fd=parent)
            except FileNotFoundError:
                return None
            os.fsync(parent)
    except CheckpointNotFoundError:
        return None
    return path.with_name(trash)


def delete_tree(path: Path) -> None:
    """Delete a (retired) tree, ignoring what is already gone.

    A symbolic link is removed itself, never followed; ``shutil.rmtree`` with a directory
    descriptor does not follow the links inside the tree either.
    """
    try:
        with open_dir(path.parent.parent, path.parent.name) as parent:
            try:
                mode = os.lstat(path.name, dir_fd=parent).st_mode
            except FileNotFoundError:
                return
            if stat.S_ISDIR(mode):
                shutil.rmtree(path.name, ignore_errors=True, dir_fd=parent)
            else:
                os.unlink(path.name, dir_fd=parent)
    except (CheckpointNotFoundError, FileNotFoundError):
        return


def remove_tree(path: Path) -> None:
    """Remove a directory tree: retire it first, so a crash mid-way leaves nothing that looks like
    a checkpoint, then delete it."""
    trash = retire_tree(path)
    if trash is not None:
        delete_tree(trash)


def clean_stale(run_dir: Path) -> list[Path]:
    """Remove temp and trash entries left by interrupted saves or prunes; returns what was removed."""
    removed: list[Path] = []
    if not is_real_dir(run_dir):
        return removed
    for entry in run_dir.iterdir():
        if entry.name.startswith((TEMP_PREFIX, TRASH_PREFIX)):
            delete_tree(entry)
            removed.append(entry)
    return removed
