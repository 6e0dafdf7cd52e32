"""Measure a real training step on a CUDA device (caching-allocator statistics and snapshots).

The snapshot written by `record_snapshot` opens in https://pytorch.org/memory_viz.
"""

from __future__ import annotations

import gc
import pickle
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from gpu_optimizer.profiling.estimator import LossFn, sum_loss
from gpu_optimizer.profiling.optimizers import build_optimizer
from gpu_optimizer.profiling.report import MEMORY_KINDS, MemoryReport, Phase


class CudaUnavailableError(RuntimeError):
    """A CUDA measurement was asked for on a machine without a usable CUDA device."""


def require_cuda(device: str) -> torch.device:
    """The torch device for `device` ("cuda" or "cuda:N"). Raises CudaUnavailableError."""
    dev = torch.device(device)
    if dev.type != "cuda":
        raise ValueError(f"measurement needs a CUDA device, got {device!r}")
    if not torch.cuda.is_available():
        raise CudaUnavailableError("no CUDA device is available; use the estimator instead")
    return dev


def make_inputs(
    batch_size: int, input_shape: Sequence[int], dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """A random batch; integer dtypes get token ids 0/1, valid for any vocabulary."""
    shape = (batch_size, *input_shape)
    if dtype.is_floating_point:
        return torch.randn(shape, dtype=dtype, device=device)
    return torch.randint(0, 2, shape, dtype=dtype, device=device)


@contextmanager
def record_snapshot(path: Path | None, max_entries: int = 100_000) -> Iterator[None]:
    """Record allocator history while open and pickle the snapshot to `path` (None: no-op)."""
    if path is None:
        yield
        return
    torch.cuda.memory._record_memory_history(max_entries=max_entries)
    try:
        yield
        snapshot = torch.cuda.memory._snapshot()
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            pickle.dump(snapshot, fh)
    finally:
        torch.cuda.memory._record_memory_history(enabled=None)


def measure_cuda(
    model_factory: Callable[[], torch.nn.Module],
    input_shape: Sequence[int],
    *,
    batch_size: int = 1,
    dtype: torch.dtype = torch.float32,
    optimizer: str = "adamw",
    device: str = "cuda",
    input_dtype: torch.dtype | None = None,
    loss_fn: LossFn | None = None,
    snapshot_path: Path | None = None,
    name: str | None = None,
) -> MemoryReport:
    """Run two real training steps on `device` and report what the allocator saw.

    The peak is `max_memory_allocated` minus what was allocated before the model was built;
    its phase is the phase whose own peak was highest. Raises CudaUnavailableError.
    """
    dev = require_cuda(device)
    started = time.perf_counter()
    gc.collect()
    torch.cuda.empty_cache()
    baseline = torch.cuda.memory_allocated(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    phase_peaks: dict[Phase, int] = {"forward": 0, "backward": 0, "optimizer": 0}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        saved.setdefault(int(st._cdata), int(st.nbytes()))
        return t

    def end_phase(phase: Phase) -> None:
        torch.cuda.synchronize(dev)
        phase_peaks[phase] = max(phase_peaks[phase], torch.cuda.max_memory_allocated(dev) - baseline)
        torch.cuda.reset_peak_memory_stats(dev)

    with record_snapshot(snapshot_path):
        with torch.device(dev):
            model = model_factory().to(dtype=dtype).train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = build_optimizer(optimizer, params)
        inputs = make_inputs(batch_size, input_shape, input_dtype or dtype, dev)
        for _ in range(2):
            opt.zero_grad(set_to_none=True)
            saved.clear()
            with torch.autograd.graph.saved_tensors_hooks(pack, _identity):
                loss = (loss_fn or sum_loss)(model(inputs))
            end_phase("forward")
            torch.autograd.backward(loss)
            del loss
            end_phase("backward")
            opt.step()
            end_phase("optimizer")
    param_keys = {int(t.untyped_storage()._cdata) for t in [*model.parameters(), *model.buffers()]}
    peak_phase = max(phase_peaks, key=lambda p: phase_peaks[p])
    stats: dict[str, Any] = torch.cuda.memory_stats(dev)
    breakdown: dict[str, int] = dict.fromkeys(MEMORY_KINDS, 0)
    report = MemoryReport(
        model=name or type(model).__name__,
        method="measured",
        device=str(dev),
        dtype=str(dtype).removeprefix("torch."),
        optimizer=optimizer,
        batch_size=batch_size,
        input_shape=tuple(int(d) for d in input_shape),
        peak_bytes=phase_peaks[peak_phase],
        peak_phase=peak_phase,
        peak_module=None,
        peak_breakdown=breakdown,
        parameter_bytes=sum(p.numel() * p.element_size() for p in model.parameters()),
        buffer_bytes=sum(b.numel() * b.element_size() for b in model.buffers()),
        gradient_bytes=sum(p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None),
        optimizer_state_bytes=sum(
            t.numel() * t.element_size()
            for st in opt.state.values()
            for t in st.values()
            if isinstance(t, torch.Tensor) and t.device.type == "cuda"
        ),
        activation_bytes=sum(n for k, n in saved.items() if k not in param_keys),
        parameter_count=sum(p.numel() for p in model.parameters()),
        elapsed_s=round(time.perf_counter() - started, 4),
        notes=[f"allocator reserved peak: {int(stats.get('reserved_bytes.all.peak', 0))} bytes"],
    )
    del model, opt, inputs, params
    gc.collect()
    torch.cuda.empty_cache()
    return report


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


def measure_cuda_step(
    build: Callable[[], torch.nn.Module],
    input_shape: Sequence[int],
    *,
    batch_size: int,
    dtype: torch.dtype = torch.float32,
    autocast_dtype: torch.dtype | None = None,
    optimizer: str = "adamw",
    input_dtype: torch.dtype | None = None,
    loss_fn: LossFn | None = None,
    device: str = "cuda",
) -> dict[str, int]:
    """`max_memory_allocated` and `max_memory_reserved` over two real training steps on CUDA,
    from an emptied cache, with the optimizer's CUDA default (foreach) and optional autocast.

    What the estimate's allocated/reserved peaks (plus cuBLAS's workspace) are compared with.
    Raises CudaUnavailableError.
    """
    dev = require_cuda(device)
    gc.collect()
    torch.cuda.empty_cache()
    base_allocated = torch.cuda.memory_allocated(dev)
    base_reserved = torch.cuda.memory_reserved(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    with torch.device(dev):
        model = build().to(dtype=dtype).train()
    opt = build_optimizer(optimizer, [p for p in model.parameters() if p.requires_grad])
    inputs = make_inputs(batch_size, input_shape, input_dtype or dtype, dev)
    for _ in range(2):
        amp = torch.autocast("cuda", dtype=autocast_dtype) if autocast_dtype else _null()
        with amp:
            loss = (loss_fn or sum_loss)(model(inputs))
        torch.autograd.backward(loss)
        del loss
        opt.step()
        opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize(dev)
    out = {
        "allocated_peak_bytes": int(torch.cuda.max_memory_allocated(dev) - base_allocated),
        "reserved_peak_bytes": int(torch.cuda.max_memory_reserved(dev) - base_reserved),
    }
    del model, opt, inputs
    gc.collect()
    torch.cuda.empty_cache()
    return out


@contextmanager
def _null() -> Iterator[None]:
    yield
