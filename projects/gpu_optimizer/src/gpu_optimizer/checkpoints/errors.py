"""Checkpoint errors, defined once so callers (CLI, API) can map them to one envelope."""

from __future__ import annotations


class CheckpointError(Exception):
    """Base class of every checkpoint failure."""


class InvalidCheckpointNameError(CheckpointError, ValueError):
    """A run or checkpoint name that could leave the root directory or is otherwise unusable."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No checkpoint of that name has a manifest."""


class CheckpointExistsError(CheckpointError, FileExistsError):
    """A complete checkpoint of that name already exists."""


class CheckpointCorruptError(CheckpointError):
    """The manifest is missing or invalid, or a file does not match its recorded hash."""


class UnsafePathError(CheckpointError):
    """A path under the checkpoint root is a symbolic link or leads outside the root.

    Nothing below the root is ever followed through a link: such an entry is neither read nor deleted.
    """


class UnsupportedStateError(CheckpointError, TypeError):
    """A state dict holds a value that cannot be stored without pickle."""
