"""Atomic, verified, retained training checkpoints (single process and DCP shards)."""

from gpu_optimizer.checkpoints.errors import (
    CheckpointCorruptError,
    CheckpointError,
    CheckpointExistsError,
    CheckpointNotFoundError,
    InvalidCheckpointNameError,
    UnsupportedStateError,
)
from gpu_optimizer.checkpoints.manager import CheckpointManager
from gpu_optimizer.checkpoints.manifest import CheckpointInfo, VerifyResult

__all__ = [
    "CheckpointCorruptError",
    "CheckpointError",
    "CheckpointExistsError",
    "CheckpointInfo",
    "CheckpointManager",
    "CheckpointNotFoundError",
    "InvalidCheckpointNameError",
    "UnsupportedStateError",
    "VerifyResult",
]
