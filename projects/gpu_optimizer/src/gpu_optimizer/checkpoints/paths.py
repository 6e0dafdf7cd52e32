"""Containment under the checkpoint root: nothing below the root is followed through a symbolic link.

The root itself may be a link (an operator's choice, made once); every name below it, the run
directory, the checkpoint directory and the files in it, must be the real thing. Reads check each
component with ``lstat`` and the resolved path against the root, then open the file with
``O_NOFOLLOW``. Deletions go further and work through directory descriptors opened with
``O_NOFOLLOW`` one component at a time, so swapping a directory for a link between a check and the
deletion cannot redirect it outside the root.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gpu_optimizer.checkpoints.errors import CheckpointNotFoundError, UnsafePathError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_NOT_FOLLOWED = "links under the checkpoint root are not followed"


def is_real_dir(path: Path) -> bool:
    """True for a directory that is not a symbolic link (no error for anything else)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def check_contained(root: Path, path: Path) -> Path:
    """Return ``path`` if it lies under ``root`` with no symbolic link below the root on the way.

    Raises:
        UnsafePathError: a component below the root is a link, or the path resolves outside the root.
        CheckpointNotFoundError: a component does not exist.
    """
    try:
        parts = path.relative_to(root).parts
    except ValueError as exc:
        raise UnsafePathError(f"{path.name!r} is not under the checkpoint root") from exc
    current = root
    for part in parts:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError as exc:
            raise CheckpointNotFoundError(f"{part!r} does not exist") from exc
        if stat.S_ISLNK(mode):
            raise UnsafePathError(f"{part!r} is a symbolic link; {_NOT_FOLLOWED}")
    if not path.resolve().is_relative_to(root.resolve()):
        raise UnsafePathError(f"{path.name!r} resolves outside the checkpoint root")
    return path


def _open_child(parent_fd: int, name: str) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        try:
            is_link = stat.S_ISLNK(os.lstat(name, dir_fd=parent_fd).st_mode)
        except OSError:
            is_link = False
        if is_link:
            raise UnsafePathError(f"{name!r} is a symbolic link; {_NOT_FOLLOWED}") from exc
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise CheckpointNotFoundError(f"{name!r} is not a directory") from exc
        raise


@contextmanager
def open_dir(base: Path, *names: str) -> Iterator[int]:
    """A descriptor of ``base/names...``, each name opened with ``O_NOFOLLOW`` relative to the last.

    ``base`` (the checkpoint root, or a run directory's parent) is opened as given.

    Raises:
        UnsafePathError: one of ``names`` is a symbolic link.
        CheckpointNotFoundError: one of them is missing or not a directory.
    """
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in names:
            child = _open_child(fd, name)
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def open_file(path: Path) -> int:
    """A read descriptor of ``path`` that refuses a symbolic link as the last component.

    Raises:
        UnsafePathError: ``path`` is a symbolic link.
        FileNotFoundError: ``path`` does not exist.
    """
    try:
        return os.open(path, READ_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePathError(f"{path.name!r} is a symbolic link") from exc
        raise
