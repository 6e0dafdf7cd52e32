"""Memory profiling of training steps: estimate without a GPU, measure on CUDA, recommend."""

from gpu_optimizer.profiling.batch_size import (
    BatchSearch,
    CudaStepProbe,
    NoBatchFitsError,
    estimator_probe,
    find_max_batch,
    find_max_batch_cuda,
)
from gpu_optimizer.profiling.estimator import EstimationError, estimate, sum_loss
from gpu_optimizer.profiling.gpt import GPT, GPTConfig
from gpu_optimizer.profiling.measure import CudaUnavailableError, measure_cuda, record_snapshot
from gpu_optimizer.profiling.models import MODELS, ModelSpec, get_model_spec, model_source
from gpu_optimizer.profiling.options import StepOptions
from gpu_optimizer.profiling.recommend import checkpoint_candidates, recommend
from gpu_optimizer.profiling.report import MemoryReport, ModuleMemory, Recommendation

__all__ = [
    "GPT",
    "MODELS",
    "BatchSearch",
    "CudaStepProbe",
    "CudaUnavailableError",
    "EstimationError",
    "GPTConfig",
    "MemoryReport",
    "ModelSpec",
    "ModuleMemory",
    "NoBatchFitsError",
    "Recommendation",
    "StepOptions",
    "checkpoint_candidates",
    "estimate",
    "estimator_probe",
    "find_max_batch",
    "find_max_batch_cuda",
    "get_model_spec",
    "measure_cuda",
    "model_source",
    "recommend",
    "record_snapshot",
    "sum_loss",
]
