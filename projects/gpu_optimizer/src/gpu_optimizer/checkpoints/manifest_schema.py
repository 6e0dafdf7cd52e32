"""Field-by-field validation of a parsed manifest, so that a tampered or damaged one is reported
invalid instead of being trusted (or raising deep in the service as a 500).

What is checked: integers are JSON integers (not floats such as ``1e400``, which JSON parsers turn
into infinity, nor booleans) in the range of a signed 64-bit step; metrics are numbers (NaN and
infinities are allowed: a diverged loss is a fact worth keeping, and ranks last); every file is
one plain name inside its checkpoint (no separator, no ``..``, not absolute, not the manifest),
with a size and a 32-byte hex digest of the manifest's hash. Messages name the field, never the
parser's exception text.
"""

from __future__ import annotations

import math
from typing import Any

from gpu_optimizer.checkpoints.errors import CheckpointCorruptError
from gpu_optimizer.checkpoints.hashing import ALGORITHMS, SHA256, is_hex_digest
from gpu_optimizer.checkpoints.tensorio import FileDigest

MANIFEST_NAME = "MANIFEST.json"
FORMAT_V1 = "gpu_optimizer.checkpoint/1"
FORMAT = "gpu_optimizer.checkpoint/2"
MAX_INT = 2**63 - 1
_MAX_NAME = 255


class _Invalid(Exception):
    """One field is wrong; carries the message for the client."""


def _integer(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT:
        raise _Invalid(f"{field} must be an integer from 0 to 2**63-1")
    return value


def _string(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"{field} must be a string")
    return value


def _mapping(value: object, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid(f"{field} must be an object")
    return value


def _metric(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"{field} must be a number")
    if isinstance(value, int) and not -MAX_INT <= value <= MAX_INT:
        raise _Invalid(f"{field} is out of range")
    return float(value)


def is_file_name(name: object) -> bool:
    """True for one plain file name inside a checkpoint (not the manifest itself)."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= _MAX_NAME
        and name not in (".", "..", MANIFEST_NAME)
        and not any(c in name for c in "/\\\x00")
    )


def _files(value: object, algorithm: str) -> dict[str, FileDigest]:
    files: dict[str, FileDigest] = {}
    for name, entry in _mapping(value, "files").items():
        if not is_file_name(name):
            raise _Invalid("files must be plain names inside the checkpoint")
        entry = _mapping(entry, f"files[{name!r}]")
        digest = entry.get(algorithm)
        if not is_hex_digest(digest):
            raise _Invalid(f"files[{name!r}] needs a {algorithm} digest of 64 hex digits")
        files[name] = FileDigest(str(digest), _integer(entry.get("size"), f"files[{name!r}].size"), algorithm)
    return files


def _fields(body: object) -> dict[str, Any]:
    body = _mapping(body, "the manifest")
    fmt = body.get("format")
    if fmt == FORMAT_V1:
        algorithm = SHA256
    elif fmt == FORMAT:
        algorithm = _string(body.get("hash"), "hash")
        if algorithm not in ALGORITHMS:
            raise _Invalid(f"hash must be one of {', '.join(ALGORITHMS)}")
    else:
        raise _Invalid("unknown manifest format")
    epoch = body.get("epoch")
    config_digest = body.get("config_digest")
    components = body.get("components")
    if not isinstance(components, list) or not all(isinstance(c, str) for c in components):
        raise _Invalid("components must be a list of strings")
    extra = body.get("extra")
    return {
        "step": _integer(body.get("step"), "step"),
        "epoch": None if epoch is None else _integer(epoch, "epoch"),
        "metrics": {
            _string(k, "a metric name"): _metric(v, f"metrics[{k!r}]")
            for k, v in _mapping(body.get("metrics"), "metrics").items()
        },
        "created_at": _string(body.get("created_at"), "created_at"),
        "config_digest": None if config_digest is None else _string(config_digest, "config_digest"),
        "files": _files(body.get("files"), algorithm),
        "components": tuple(components),
        "kind": _string(body.get("kind", "single"), "kind"),
        "versions": {str(k): str(v) for k, v in _mapping(body.get("versions"), "versions").items()},
        "extra": {} if extra is None else _mapping(extra, "extra"),
    }


def parse_manifest(body: object, checkpoint: str) -> dict[str, Any]:
    """The ``CheckpointInfo`` fields (all but name and path) of a parsed manifest.

    Raises:
        CheckpointCorruptError: a field is missing or invalid; the message names it.
    """
    try:
        return _fields(body)
    except _Invalid as exc:
        raise CheckpointCorruptError(f"{checkpoint}: invalid manifest: {exc}") from exc


def finite_or_none(value: float) -> float | None:
    """A metric for JSON output: NaN and infinities become None (JSON has no such numbers)."""
    return value if math.isfinite(value) else None
