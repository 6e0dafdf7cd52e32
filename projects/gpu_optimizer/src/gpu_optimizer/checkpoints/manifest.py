"""The manifest: the last file written into a checkpoint, and the only proof that it is complete.

It records the metadata block (step, epoch, metrics, config digest, library versions), the hash
algorithm (``"hash"``) and the hash and size of every other file in the checkpoint directory.

Format 2 names its hash (BLAKE3 when written here) and keys each file's digest by it
(``{"blake3": "...", "size": n}``); format 1, written before, always used SHA-256
(``{"sha256": "...", "size": n}``) and is still read. A manifest is validated field by field
(``manifest_schema``) before anything trusts it: a tampered one is reported invalid, never followed.
"""

from __future__ import annotations

import json
import os
import platform
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import torch

from gpu_optimizer.checkpoints.atomic import write_file_atomic
from gpu_optimizer.checkpoints.errors import CheckpointCorruptError, UnsafePathError
from gpu_optimizer.checkpoints.manifest_schema import FORMAT, MANIFEST_NAME, parse_manifest
from gpu_optimizer.checkpoints.paths import open_file
from gpu_optimizer.checkpoints.tensorio import FileDigest, hash_file

__all__ = [
    "FORMAT",
    "MANIFEST_NAME",
    "CheckpointInfo",
    "VerifyResult",
    "library_versions",
    "now_iso",
    "read_manifest",
    "verify_files",
    "write_manifest",
]


@dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint with a readable manifest (its file hashes are checked by ``verify``)."""

    name: str
    path: Path
    step: int
    epoch: int | None
    metrics: dict[str, float]
    created_at: str
    config_digest: str | None
    files: dict[str, FileDigest]
    components: tuple[str, ...]
    kind: str = "single"
    versions: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def hash_algorithm(self) -> str:
        """The hash of every file of this checkpoint (``blake3``; ``sha256`` for format 1)."""
        algorithms = {d.algorithm for d in self.files.values()}
        return algorithms.pop() if len(algorithms) == 1 else "blake3"

    @property
    def size_bytes(self) -> int:
        """Total size of the checkpoint's files, manifest excluded."""
        return sum(d.size for d in self.files.values())


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of checking a checkpoint's files against its manifest."""

    name: str
    ok: bool
    mismatched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    error: str | None = None


def library_versions() -> dict[str, str]:
    """Versions that decide whether a checkpoint can be read back the same way."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "safetensors": safetensors.__version__,
        "cuda": str(torch.version.cuda),
    }


def write_manifest(info: CheckpointInfo) -> None:
    """Write ``info`` as the manifest of ``info.path`` atomically (temp file, fsync, rename).

    Raises:
        ValueError: the files were hashed with different algorithms.
    """
    algorithms = {d.algorithm for d in info.files.values()}
    if len(algorithms) > 1:
        raise ValueError(f"one hash per checkpoint, got {sorted(algorithms)}")
    algorithm = info.hash_algorithm
    body = {
        "format": FORMAT,
        "hash": algorithm,
        "name": info.name,
        "kind": info.kind,
        "step": info.step,
        "epoch": info.epoch,
        "metrics": info.metrics,
        "created_at": info.created_at,
        "config_digest": info.config_digest,
        "versions": info.versions,
        "components": list(info.components),
        "extra": info.extra,
        "files": {name: {algorithm: d.digest, "size": d.size} for name, d in sorted(info.files.items())},
    }
    write_file_atomic(info.path / MANIFEST_NAME, json.dumps(body, indent=2, sort_keys=True).encode())


_MANIFEST_MAX_BYTES = 16 << 20


def read_manifest(path: Path) -> CheckpointInfo:
    """Parse and validate the manifest of the checkpoint directory ``path`` (format 1 or 2).

    The checkpoint's name is its directory's name. The caller checks that ``path`` is contained
    in the root (``paths.check_contained``); the manifest itself is opened without following a link.

    Raises:
        CheckpointCorruptError: missing, unreadable, a link, of another format, or malformed; the
            message says which field, in words meant for the client.
    """
    try:
        with os.fdopen(open_file(path / MANIFEST_NAME), "rb") as f:
            raw = f.read(_MANIFEST_MAX_BYTES + 1)
    except FileNotFoundError as exc:
        raise CheckpointCorruptError(f"{path.name}: no manifest (incomplete save)") from exc
    except UnsafePathError as exc:
        raise CheckpointCorruptError(f"{path.name}: the manifest is a symbolic link") from exc
    except OSError as exc:
        raise CheckpointCorruptError(f"{path.name}: the manifest cannot be read") from exc
    if len(raw) > _MANIFEST_MAX_BYTES:
        raise CheckpointCorruptError(f"{path.name}: the manifest is larger than 16 MiB")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise CheckpointCorruptError(f"{path.name}: the manifest is not JSON") from exc
    fields = parse_manifest(body, path.name)
    return CheckpointInfo(name=path.name, path=path, **fields)


def verify_files(info: CheckpointInfo, skip: Mapping[str, FileDigest] | None = None) -> VerifyResult:
    """Hash every file listed in the manifest; ``skip`` lists files already verified while reading.

    Names were checked when the manifest was read (one plain name inside the checkpoint each); a
    file that is a symbolic link or not a regular file is reported mismatched without being read.
    """
    mismatched: list[str] = []
    missing: list[str] = []
    for name, expected in sorted(info.files.items()):
        if skip and skip.get(name) == expected:
            continue
        file = info.path / name
        try:
            mode = os.lstat(file).st_mode
        except FileNotFoundError:
            missing.append(name)
            continue
        if not stat.S_ISREG(mode):
            mismatched.append(name)
            continue
        try:
            actual = hash_file(file, expected.algorithm)
        except (UnsafePathError, OSError):
            mismatched.append(name)
            continue
        if actual != expected:
            mismatched.append(name)
    return VerifyResult(info.name, not (mismatched or missing), mismatched, missing)


def now_iso() -> str:
    """Current UTC time as ISO 8601, the manifest's ``created_at``."""
    return datetime.now(UTC).isoformat(timespec="microseconds")
