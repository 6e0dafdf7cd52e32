"""Tensor swapping across device, host and disk tiers, and activation offloading for training."""

from gpu_optimizer.swapping.errors import (
    DuplicateTensorError,
    SwapClosedError,
    SwapError,
    TensorTooLargeError,
    UnknownTensorError,
)
from gpu_optimizer.swapping.offload import offload_activations
from gpu_optimizer.swapping.swapper import TensorSwapper
from gpu_optimizer.swapping.tiers import Tier

__all__ = [
    "DuplicateTensorError",
    "SwapClosedError",
    "SwapError",
    "TensorSwapper",
    "TensorTooLargeError",
    "Tier",
    "UnknownTensorError",
    "offload_activations",
]
