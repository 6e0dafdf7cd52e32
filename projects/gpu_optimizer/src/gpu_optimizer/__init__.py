"""GPU memory optimisation: profiling, batch-size search, training guard, swapping, checkpoints.

Public names are imported lazily so that `import gpu_optimizer` stays cheap (no torch import).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gpu_optimizer.checkpoints import CheckpointManager
    from gpu_optimizer.guard import GuardAction, GuardConfig, TrainingAborted, TrainingGuard
    from gpu_optimizer.profiling import (
        MemoryReport,
        Recommendation,
        estimate,
        find_max_batch,
        get_model_spec,
        measure_cuda,
        recommend,
    )
    from gpu_optimizer.swapping import TensorSwapper

_EXPORTS = {
    "CheckpointManager": "gpu_optimizer.checkpoints",
    "TensorSwapper": "gpu_optimizer.swapping",
    "GuardAction": "gpu_optimizer.guard",
    "GuardConfig": "gpu_optimizer.guard",
    "TrainingAborted": "gpu_optimizer.guard",
    "TrainingGuard": "gpu_optimizer.guard",
    "MemoryReport": "gpu_optimizer.profiling",
    "Recommendation": "gpu_optimizer.profiling",
    "estimate": "gpu_optimizer.profiling",
    "find_max_batch": "gpu_optimizer.profiling",
    "get_model_spec": "gpu_optimizer.profiling",
    "measure_cuda": "gpu_optimizer.profiling",
    "recommend": "gpu_optimizer.profiling",
}

__all__ = [
    "CheckpointManager",
    "GuardAction",
    "GuardConfig",
    "MemoryReport",
    "Recommendation",
    "TensorSwapper",
    "TrainingAborted",
    "TrainingGuard",
    "estimate",
    "find_max_batch",
    "get_model_spec",
    "measure_cuda",
    "recommend",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gpu_optimizer' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
