"""Scratch memory that CPU convolution kernels allocate inside themselves, measured for real.

Fake tensors see every tensor an operation returns, but not the buffers a kernel allocates and
frees inside one call. On the CPU, oneDNN's convolutions reorder their activations into blocked
layouts (channels padded to the vector width: 16 floats with AVX-512, 8 with AVX2), which takes
as much again as an input or output for the duration of the call. Whether that matters depends on
where the step peaks: at the end of forward it does not (no convolution runs then), but when the
model's outputs stay alive the peak moves into a convolution's backward, where YOLO11n-pose at
256x256 shows 1.5 MB (1.3%) of such scratch.

The amount depends on the CPU's instruction set and oneDNN's choice of algorithm, so it is not
modelled from shapes: each distinct convolution call seen while tracing is run once for real on
this CPU, under the profiler, and the bytes it allocated beyond its outputs are spliced into the
traced timeline as a transient allocation at the point of the call. Large calls are measured on a
smaller batch and scaled (scratch is per sample for these reorders).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch._C._profiler import _EventType
from torch._subclasses.fake_tensor import unset_fake_temporarily
from torch.profiler import ProfilerActivity, profile, record_function

SCRATCH_OPS = frozenset({torch.ops.aten.convolution.default, torch.ops.aten.convolution_backward.default})
# Calls whose tensors exceed this are measured on fewer samples and scaled up.
MEASURE_BYTES_CAP = 64 * 1024 * 1024


@dataclass(frozen=True)
class KernelCall:
    """One traced call: the op and its arguments with tensors replaced by (shape, dtype)."""

    op: Any
    args: tuple[Hashable, ...]

    @classmethod
    def of(cls, op: Any, args: Sequence[Any]) -> KernelCall:
        return cls(op, tuple(_describe(a) for a in args))

    def batch(self) -> int:
        first = self.args[0]
        return int(first[1][0]) if isinstance(first, tuple) and first and first[0] == "tensor" else 1

    def tensor_bytes(self) -> int:
        total = 0
        for a in self.args:
            if isinstance(a, tuple) and a and a[0] == "tensor":
                shape, dtype = a[1], a[2]
                total += _numel(shape) * torch.empty((), dtype=dtype).element_size()
        return total


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _describe(value: Any) -> Hashable:
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(int(d) for d in value.shape), value.dtype)
    if isinstance(value, list | tuple):
        return ("seq", tuple(_describe(v) for v in value))
    return ("value", value)


# Which positional arguments carry the batch: the input (forward); grad_output and input (backward).
_BATCHED_ARGS = {
    torch.ops.aten.convolution.default: frozenset({0}),
    torch.ops.aten.convolution_backward.default: frozenset({0, 1}),
}


def _build(description: Hashable, batch: int | None) -> Any:
    assert isinstance(description, tuple)
    kind = description[0]
    if kind == "tensor":
        shape = list(description[1])
        if batch is not None:
            shape[0] = batch
        return torch.randn(shape, dtype=torch.float32).to(description[2])
    if kind == "seq":
        return [_build(d, None) for d in description[1]]
    return description[1]


def _real_args(call: KernelCall, batch: int) -> list[Any]:
    """Real tensors for `call` with `batch` samples (weights and bias keep their shape)."""
    batched = _BATCHED_ARGS[call.op]
    return [_build(d, batch if i in batched else None) for i, d in enumerate(call.args)]


def measure_scratch(calls: Sequence[KernelCall]) -> dict[KernelCall, int]:
    """Bytes each call allocates beyond its outputs, on this CPU (0 for calls that allocate none).

    Runs every call once to warm oneDNN's primitive cache, then once more inside one profiler
    session; needs memory for one call's tensors at a time.
    """
    unique = [c for c in dict.fromkeys(calls) if c not in _MEASURED]
    if unique:
        if len(_MEASURED) > _MEASURED_CAP:
            _MEASURED.clear()
        _MEASURED.update(_measure(unique))
    return {c: _MEASURED[c] for c in calls}


# Measurements depend only on the call and this CPU: the batch-size search estimates many steps.
_MEASURED: dict[KernelCall, int] = {}
_MEASURED_CAP = 4096


def _measure(unique: Sequence[KernelCall]) -> dict[KernelCall, int]:
    plans: list[tuple[KernelCall, int, float]] = []
    for call in unique:
        batch = call.batch()
        per_sample = max(1, call.tensor_bytes() // max(batch, 1))
        measured_batch = max(1, min(batch, MEASURE_BYTES_CAP // per_sample))
        plans.append((call, measured_batch, batch / measured_batch))
    with unset_fake_temporarily(), torch.no_grad():
        for call, batch, _ in plans:
            call.op(*_real_args(call, batch))
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            for index, (call, batch, _) in enumerate(plans):
                args = _real_args(call, batch)
                with record_function(f"kernel_scratch:{index}"):
                    out = call.op(*args)
                del out, args
    assert prof.profiler is not None
    peaks = _scratch_by_label(prof.profiler.kineto_results.experimental_event_tree())
    return {call: int(peaks.get(i, 0) * scale) for i, (call, _, scale) in enumerate(plans)}


def _scratch_by_label(roots: Sequence[Any]) -> dict[int, int]:
    """For each `kernel_scratch:<i>` range: the peak of its allocations minus what it kept."""
    found: dict[int, int] = {}
    pending = list(roots)
    while pending:
        event = pending.pop()
        if event.name.startswith("kernel_scratch:"):
            found[int(event.name.split(":")[1])] = _scratch_of(event)
            continue
        pending.extend(event.children)
    return found


def allocation_peak(roots: Sequence[Any]) -> tuple[int, int]:
    """(peak, final) of the running sum of the allocator events below the profiler `roots`."""
    allocations: list[tuple[int, int]] = []
    pending = list(roots)
    while pending:
        event = pending.pop()
        pending.extend(event.children)
        if event.typed[0] == _EventType.Allocation:
            allocations.append((event.start_time_ns, int(event.typed[1].alloc_size)))
    current = peak = 0
    for _, nbytes in sorted(allocations):
        current += nbytes
        peak = max(peak, current)
    return peak, current


def _scratch_of(event: Any) -> int:
    peak, kept = allocation_peak(event.children)
    return max(0, peak - kept)
