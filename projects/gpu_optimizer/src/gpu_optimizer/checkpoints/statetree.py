"""Split nested state (state dicts, RNG states) into tensors for safetensors and a JSON skeleton.

Optimizer state dicts mix tensors with ints, floats, lists, tuples and int-keyed dicts. Tensors and
numpy arrays go into a flat ``{key: tensor}`` map; everything else becomes JSON with small tagged
objects for the shapes JSON lacks (non-string keys, tuples), so loading never needs pickle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from gpu_optimizer.checkpoints.errors import CheckpointCorruptError, UnsupportedStateError

_TENSOR, _ARRAY, _DICT, _TUPLE = "__tensor__", "__ndarray__", "__dict__", "__tuple__"


def flatten(
    state: Any, copy: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> tuple[Any, dict[str, torch.Tensor]]:
    """Return ``(skeleton, tensors)``: a JSON-ready skeleton and the tensors it refers to by key.

    Args:
        state: nested dicts/lists/tuples of tensors, numpy arrays and JSON scalars.
        copy: applied to every tensor (e.g. a pinned host copy for async saves); identity when None.

    Raises:
        UnsupportedStateError: a value of any other type (it would need pickle).
    """
    tensors: dict[str, torch.Tensor] = {}

    def put(path: str, tensor: torch.Tensor) -> str:
        if path in tensors:
            raise UnsupportedStateError(f"two tensors map to the key {path!r}; rename a state key")
        tensors[path] = tensor
        return path

    def walk(value: Any, path: str) -> Any:
        if isinstance(value, torch.Tensor):
            return {_TENSOR: put(path, copy(value) if copy else value.detach())}
        if isinstance(value, np.ndarray):
            return {_ARRAY: put(path, torch.from_numpy(np.ascontiguousarray(value)).clone())}
        if isinstance(value, np.generic):
            return value.item()
        if value is None or isinstance(value, bool | int | float | str):
            return value
        if isinstance(value, dict):
            items = []
            for i, (k, v) in enumerate(value.items()):
                if not (k is None or isinstance(k, bool | int | float | str)):
                    raise UnsupportedStateError(f"dict key {k!r} at {path or '<root>'} is not a JSON scalar")
                # String keys keep their name, so model files read as ordinary safetensors state dicts.
                part = k if isinstance(k, str) else f"#{i}"
                items.append([k, walk(v, f"{path}/{part}" if path else part)])
            return {_DICT: items}
        if isinstance(value, list | tuple):
            seq = [walk(v, f"{path}/{i}" if path else str(i)) for i, v in enumerate(value)]
            return {_TUPLE: seq} if isinstance(value, tuple) else seq
        raise UnsupportedStateError(
            f"value of type {type(value).__name__} at {path or '<root>'} cannot be stored without pickle"
        )

    return walk(state, ""), tensors


def unflatten(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Rebuild the nested state from :func:`flatten`'s output.

    Raises:
        CheckpointCorruptError: the skeleton refers to a tensor that is not in ``tensors``.
    """

    def tensor(key: str) -> torch.Tensor:
        if key not in tensors:
            raise CheckpointCorruptError(f"state refers to missing tensor {key!r}")
        return tensors[key]

    def walk(value: Any) -> Any:
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, dict):
            if _TENSOR in value:
                return tensor(value[_TENSOR])
            if _ARRAY in value:
                return tensor(value[_ARRAY]).numpy().copy()
            if _TUPLE in value:
                return tuple(walk(v) for v in value[_TUPLE])
            if _DICT in value:
                return {k: walk(v) for k, v in value[_DICT]}
            raise CheckpointCorruptError(f"unknown tagged object {sorted(value)}")
        return value

    return walk(skeleton)


def host_copy(tensor: torch.Tensor) -> torch.Tensor:
    """A private CPU copy (pinned when the source is on a GPU, so the copy is a fast DMA)."""
    tensor = tensor.detach()
    if tensor.device.type == "cpu":
        return tensor.clone(memory_format=torch.contiguous_format)
    out = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    return out.copy_(tensor, non_blocking=True)


def to_cpu(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor on the CPU (itself when it is there already: a synchronous save writes it at once)."""
    return tensor.detach().cpu()


def move_to(state: Any, device: torch.device) -> Any:
    """Nested state with every tensor moved to ``device``."""
    if isinstance(state, torch.Tensor):
        return state.to(device)
    if isinstance(state, dict):
        return {k: move_to(v, device) for k, v in state.items()}
    if isinstance(state, list | tuple):
        return type(state)(move_to(v, device) for v in state)
    return state
