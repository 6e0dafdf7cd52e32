"""A training kit, not a framework: the estimator, the guard and CheckpointManager in one loop.

See docs/training.md. `Trainer(config, model, optimizer_factory, dataset, loss_fn).fit()` runs on
one process or in every worker torchrun starts (DDP or FSDP2), resuming from the newest verified
checkpoint.
"""

from gpu_optimizer.training.config import TrainConfig
from gpu_optimizer.training.data import StepSampler
from gpu_optimizer.training.distributed import DistContext, init_distributed
from gpu_optimizer.training.logs import read_log
from gpu_optimizer.training.loop import Trainer
from gpu_optimizer.training.memory import SimulatedDeviceLimit, choose_micro_batch
from gpu_optimizer.training.parts import TrainResult

__all__ = [
    "DistContext",
    "SimulatedDeviceLimit",
    "StepSampler",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "choose_micro_batch",
    "init_distributed",
    "read_log",
]
