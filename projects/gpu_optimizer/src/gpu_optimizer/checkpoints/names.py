"""Validation of run and checkpoint names: a name is one path component that stays inside the root."""

from __future__ import annotations

import re

from gpu_optimizer.checkpoints.errors import InvalidCheckpointNameError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def validate_name(name: str, kind: str = "checkpoint") -> str:
    """Return ``name`` unchanged if it is a safe single path component.

    Raises:
        InvalidCheckpointNameError: empty, absolute, containing a separator or ``..``, a leading dot
            (reserved for temp dirs), or characters outside ``[A-Za-z0-9._-]``.
    """
    if not isinstance(name, str):
        raise InvalidCheckpointNameError(f"{kind} name must be a string, got {type(name).__name__}")
    if ".." in name or "/" in name or "\\" in name or "\x00" in name:
        raise InvalidCheckpointNameError(f"{kind} name {name!r} must not contain '..' or path separators")
    if not _NAME.fullmatch(name):
        raise InvalidCheckpointNameError(
            f"{kind} name {name!r} must be 1-128 of [A-Za-z0-9._-], starting with a letter or digit"
        )
    return name
