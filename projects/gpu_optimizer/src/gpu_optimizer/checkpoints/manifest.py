"""The manifest: the last file written into a checkpoint, and the only proof that it is complete.

It records the metadata block (step, epoch, metrics, config digest, library versions) and the
SHA-256 and size of every other file in the checkpoint directory.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import torch

from gpu_optimizer.checkpoints.atomic import write_file_atomic
from gpu_optimizer.checkpoints.errors import CheckpointCorruptError
from gpu_optimizer.checkpoints.tensorio import FileDigest, hash_file

MANIFEST_NAME = "MANIFEST.json"
FORMAT = "gpu_optimizer.checkpoint/1"


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
    """Write ``info`` as the manifest of ``info.path`` atomically (temp file, fsync, rename)."""
    body = {
        "format": FORMAT,
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
        "files": {name: {"sha256": d.sha256, "size": d.size} for name, d in sorted(info.files.items())},
    }
    write_file_atomic(info.path / MANIFEST_NAME, json.dumps(body, indent=2, sort_keys=True).encode())


def read_manifest(path: Path) -> CheckpointInfo:
    """Parse the manifest of the checkpoint directory ``path``.

    Raises:
        CheckpointCorruptError: missing, unreadable, of another format, or malformed.
    """
    try:
        body = json.loads((path / MANIFEST_NAME).read_bytes())
        if body.get("format") != FORMAT:
            raise CheckpointCorruptError(f"{path.name}: unknown manifest format {body.get('format')!r}")
        files = {str(k): FileDigest(str(v["sha256"]), int(v["size"])) for k, v in body["files"].items()}
        return CheckpointInfo(
            name=str(body["name"]),
            path=path,
            step=int(body["step"]),
            epoch=None if body["epoch"] is None else int(body["epoch"]),
            metrics={str(k): float(v) for k, v in body["metrics"].items()},
            created_at=str(body["created_at"]),
            config_digest=body["config_digest"],
            files=files,
            components=tuple(body["components"]),
            kind=str(body.get("kind", "single")),
            versions={str(k): str(v) for k, v in body["versions"].items()},
            extra=dict(body.get("extra") or {}),
        )
    except FileNotFoundError as exc:
        raise CheckpointCorruptError(f"{path.name}: no manifest (incomplete save)") from exc
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointCorruptError(f"{path.name}: unreadable manifest: {exc}") from exc


def verify_files(info: CheckpointInfo, skip: Mapping[str, FileDigest] | None = None) -> VerifyResult:
    """Hash every file listed in the manifest; ``skip`` lists files already verified while reading."""
    mismatched: list[str] = []
    missing: list[str] = []
    for name, expected in sorted(info.files.items()):
        if skip and skip.get(name) == expected:
            continue
        file = info.path / name
        if not file.is_file():
            missing.append(name)
        elif hash_file(file) != expected:
            mismatched.append(name)
    return VerifyResult(info.name, not (mismatched or missing), mismatched, missing)


def now_iso() -> str:
    """Current UTC time as ISO 8601, the manifest's ``created_at``."""
    return datetime.now(UTC).isoformat(timespec="microseconds")
