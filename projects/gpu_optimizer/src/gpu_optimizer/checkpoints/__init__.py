"""Atomic, verified, retained training checkpoints (single process and DCP shards)."""

from gpu_optimizer.checkpoints.deleter import BackgroundDeleter
from gpu_optimizer.checkpoints.errors import (
    CheckpointCorruptError,
    CheckpointError,
    CheckpointExistsError,
    CheckpointNotFoundError,
    InvalidCheckpointNameError,
    UnsafePathError,
    UnsupportedStateError,
)
from gpu_optimizer.checkpoints.manager import CheckpointManager
from gpu_optimizer.checkpoints.manifest import CheckpointInfo, VerifyResult

__all__ = [
    "BackgroundDeleter",
    "CheckpointCorruptError",
    "CheckpointError",
    "CheckpointExistsError",
    "CheckpointInfo",
    "CheckpointManager",
    "CheckpointNotFoundError",
    "InvalidCheckpointNameError",
    "UnsafePathError",
    "UnsupportedStateError",
    "VerifyResult",
]
