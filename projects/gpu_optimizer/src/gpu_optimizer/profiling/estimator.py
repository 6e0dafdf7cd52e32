"""Estimate the memory of one training step without allocating it (FakeTensorMode).

A user on a laptop asks whether a 7B model trains on a 12 GB card: `estimate(factory, (2048,),
batch_size=4, dtype=torch.bfloat16, input_dtype=torch.long)` builds the model on the meta device,
mirrors its parameters as fake tensors, creates the optimizer state with one untracked optimizer
step, then runs one real training step (the steady state) under a `StorageTracker`.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._pytree import tree_flatten
from torch.utils.checkpoint import checkpoint

from gpu_optimizer.profiling.allocator import simulate
from gpu_optimizer.profiling.optimizers import build_optimizer
from gpu_optimizer.profiling.options import OptimizerImpl as OptimizerImpl  # re-exported
from gpu_optimizer.profiling.options import StepOptions as StepOptions  # re-exported
from gpu_optimizer.profiling.report import MEMORY_KINDS, MemoryReport, ModuleMemory
from gpu_optimizer.profiling.sharding import (
    default_units,
    fsdp_hooks,
    per_rank_bytes,
    shards_parameters,
)
from gpu_optimizer.profiling.tracker import StorageRecord, StorageTracker, storage_key, tracking

LossFn = Callable[[Any], torch.Tensor]
ModelSource = torch.nn.Module | Callable[[], torch.nn.Module]
DEVICES = ("cpu", "cuda")


class EstimationError(RuntimeError):
    """The model could not be traced with fake tensors (data-dependent code, unsupported op)."""


def sum_loss(outputs: Any) -> torch.Tensor:
    """Default loss: the sum of every floating tensor in the model's outputs.

    Raises ValueError when the outputs hold no floating tensor.
    """
    tensors = [t for t in tree_flatten(outputs)[0] if isinstance(t, torch.Tensor) and t.is_floating_point()]
    if not tensors:
        raise ValueError("the model returned no floating tensor to build a loss from; pass loss_fn")
    total = tensors[0].sum()
    for t in tensors[1:]:
        total = total + t.sum()
    return total


def materialise(source: ModelSource) -> torch.nn.Module:
    """The module itself, or the factory's module built on the meta device (no memory)."""
    if isinstance(source, torch.nn.Module):
        return source
    with torch.device("meta"):
        model = source()
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model factory returned {type(model).__name__}, not torch.nn.Module")
    return model


def _nothing() -> None:
    return None


class _Step(torch.nn.Module):
    """Forward, loss and backward inside one call, so functional_call's fake parameters stay
    in place during backward (activation checkpointing re-runs forward there)."""

    def __init__(
        self,
        model: torch.nn.Module,
        loss_fn: LossFn,
        tracker: StorageTracker,
        after_backward: Callable[[], None] = _nothing,
    ) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn
        self.tracker = tracker
        self.after_backward = after_backward
        self.kept: list[Any] = []

    def forward(self, inputs: torch.Tensor, autocast_dtype: torch.dtype | None, keep_output: bool) -> None:
        self.tracker.set_phase("forward")
        amp = (
            torch.autocast("cpu", dtype=autocast_dtype)
            if autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with amp:
            output = self.model(inputs)
            loss = self.loss_fn(output)
        if keep_output:
            self.kept.append(output)
        del output
        self.tracker.set_phase("backward")
        torch.autograd.backward(loss)
        self.after_backward()


@contextlib.contextmanager
def _checkpointed(model: torch.nn.Module, names: Sequence[str]) -> Iterator[None]:
    """Wrap the forward of the named blocks in non-reentrant activation checkpointing."""
    try:
        blocks = [model.get_submodule(n) for n in names]
    except AttributeError as exc:
        raise ValueError(f"cannot checkpoint: {exc}") from None
    try:
        for block in blocks:
            block.forward = functools.partial(
                checkpoint, block.forward, use_reentrant=False, preserve_rng_state=False
            )
        yield
    finally:
        for block in blocks:
            block.__dict__.pop("forward", None)


def estimate(
    model: ModelSource,
    input_shape: Sequence[int],
    *,
    batch_size: int = 1,
    dtype: torch.dtype = torch.float32,
    optimizer: str = "adamw",
    device: str = "cpu",
    input_dtype: torch.dtype | None = None,
    loss_fn: LossFn | None = None,
    options: StepOptions | None = None,
    name: str | None = None,
) -> MemoryReport:
    """Memory of a steady-state training step of `model` on a batch of `batch_size` x `input_shape`.

    `model` is a module (on any device, meta included; it is not modified) or a factory called
    under the meta device. Parameters are cast to `dtype`; inputs get `input_dtype` (default
    `dtype`; token ids: torch.long). `device` picks the optimizer defaults of that device type
    ("cuda": foreach kernels); kernels are traced with CPU semantics. Returns a MemoryReport
    with method "estimate". Raises ValueError for bad arguments and EstimationError when the
    model cannot run on fake tensors.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if any(int(d) < 1 for d in input_shape):
        raise ValueError(f"input_shape dimensions must be >= 1, got {tuple(input_shape)}")
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")
    opts = options or StepOptions()
    started = time.perf_counter()
    module = materialise(model)
    tracker = StorageTracker(kernel_scratch=device == "cpu")
    fake_mode = FakeTensorMode()
    try:
        with fake_mode:
            state = _run_step(
                module,
                tracker,
                input_shape,
                batch_size,
                dtype,
                optimizer,
                device,
                input_dtype,
                loss_fn or sum_loss,
                opts,
            )
            tracker.add_kernel_scratch()
            report = _report(
                module,
                tracker,
                state,
                opts,
                name or type(module).__name__,
                device,
                dtype,
                optimizer,
                batch_size,
                tuple(int(d) for d in input_shape),
            )
    except (RuntimeError, NotImplementedError, TypeError) as exc:
        if isinstance(exc, EstimationError):
            raise
        raise EstimationError(f"could not trace a training step with fake tensors: {exc}") from exc
    return _with_elapsed(report, time.perf_counter() - started)


@dataclass
class _StepState:
    params: dict[str, torch.Tensor]
    optimizer: torch.optim.Optimizer
    gradient_uids: set[int]
    state_uids: set[int]
    grad_bytes: dict[str, int]
    state_bytes: dict[str, int]
    step_uids: set[int]


def _run_step(
    module: torch.nn.Module,
    tracker: StorageTracker,
    input_shape: Sequence[int],
    batch_size: int,
    dtype: torch.dtype,
    optimizer: str,
    device: str,
    input_dtype: torch.dtype | None,
    loss_fn: LossFn,
    opts: StepOptions,
) -> _StepState:
    params = {
        n: torch.empty_strided(p.shape, p.stride(), dtype=dtype).requires_grad_(p.requires_grad)
        for n, p in module.named_parameters()
    }
    buffers = {
        n: torch.empty_strided(b.shape, b.stride(), dtype=dtype if b.is_floating_point() else b.dtype)
        for n, b in module.named_buffers()
    }
    tracker.register(params.values(), "parameters")
    tracker.register(buffers.values(), "buffers")
    trainable = [p for p in params.values() if p.requires_grad]
    impl = opts.optimizer_impl or ("foreach" if device == "cuda" else "single")
    opt = build_optimizer(
        optimizer, trainable, foreach=impl == "foreach" or None, fused=impl == "fused" or None
    )
    buckets: torch.Tensor | None = None
    if opts.sharding == "ddp" and opts.world_size > 1:
        # DDP's gradient buckets (gradient_as_bucket_view=False): one more copy of the gradients.
        buckets = torch.empty(sum(p.numel() for p in trainable), dtype=dtype)
        tracker.register([buckets], "sharding")
    named = {f"model.{n}": t for n, t in (params | buffers).items()}
    # Warm-up without tracking: one optimizer step on zero gradients creates the optimizer state
    # a steady-state step starts with, at the cost of the optimizer alone (no forward/backward).
    for p in trainable:
        p.grad = torch.zeros_like(p)
    opt.step()
    if not opts.accumulate_gradients:
        opt.zero_grad(set_to_none=True)
    tracker.register(_state_tensors(opt), "optimizer_state")
    tracker.register([p.grad for p in trainable if p.grad is not None], "gradients")
    inputs = torch.empty((batch_size, *input_shape), dtype=input_dtype or dtype)
    tracker.register([inputs], "inputs")
    with contextlib.ExitStack() as stack:
        stack.enter_context(tracking(tracker, module))
        stack.enter_context(_checkpointed(module, opts.checkpoint_blocks))
        after_backward: Callable[[], None] = _nothing
        if shards_parameters(opts.sharding) and opts.world_size > 1:
            units = list(opts.shard_units) or default_units(module)
            copies = 1 if opts.collectives == "gloo" else 0
            gatherer = stack.enter_context(fsdp_hooks(module, tracker, units, dtype, copies))
            after_backward = functools.partial(gatherer.release, "")
        step = _Step(module, loss_fn, tracker, after_backward)
        torch.func.functional_call(step, named, (inputs, opts.autocast_dtype, opts.keep_output), strict=False)
        gradient_uids = {
            u for p in trainable if p.grad is not None if (u := tracker.uid_of(p.grad)) is not None
        }
        tracker.set_phase("optimizer")
        opt.step()
        step.kept.clear()
    grad_bytes = {n: _nbytes(p.grad) for n, p in params.items() if p.grad is not None}
    state_uids: set[int] = set()
    step_uids: set[int] = set()
    state_bytes: dict[str, int] = {}
    by_id = {id(p): n for n, p in params.items()}
    for p, st in opt.state.items():
        tensors = [t for t in st.values() if isinstance(t, torch.Tensor)]
        state_bytes[by_id[id(p)]] = sum(_nbytes(t) for t in tensors)
        state_uids |= {u for t in tensors if (u := tracker.uid_of(t)) is not None}
        step_t = st.get("step")
        if isinstance(step_t, torch.Tensor) and (u := tracker.uid_of(step_t)) is not None:
            step_uids.add(u)
    state = _StepState(params, opt, gradient_uids, state_uids, grad_bytes, state_bytes, step_uids)
    buckets = None  # DDP's buckets live until the step is over
    return state


def _state_tensors(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [t for st in opt.state.values() for t in st.values() if isinstance(t, torch.Tensor)]


def _nbytes(t: torch.Tensor) -> int:
    return int(t.untyped_storage().nbytes())


def _report(
    module: torch.nn.Module,
    tracker: StorageTracker,
    state: _StepState,
    opts: StepOptions,
    name: str,
    device: str,
    dtype: torch.dtype,
    optimizer: str,
    batch_size: int,
    input_shape: tuple[int, ...],
) -> MemoryReport:
    records = tracker.records
    for uid in state.gradient_uids:
        records[uid].kind = "gradients"
    for uid in state.state_uids:
        records[uid].kind = "optimizer_state"
    for uid in tracker.saved_uids:
        if records[uid].kind == "temporaries":
            records[uid].kind = "activations"

    def size(record: StorageRecord) -> int:
        # With the optimizer offloaded its state and its step's temporaries live in host memory;
        # on CUDA the optimizers keep their scalar step counters on the host.
        if opts.optimizer_offload and (record.kind == "optimizer_state" or record.phase == "optimizer"):
            return 0
        if device == "cuda" and record.uid in state.step_uids:
            return 0
        return per_rank_bytes(record, opts.sharding, opts.world_size)

    peak, peak_record, live = tracker.replay(size)
    breakdown: dict[str, int] = dict.fromkeys(MEMORY_KINDS, 0)
    for uid in live:
        breakdown[records[uid].kind] += size(records[uid])
    allocator = simulate(tracker.allocation_events(size))
    saved_by_module: dict[str, int] = {}
    activation_bytes = 0
    for uid, owner in tracker.saved_uids.items():
        if records[uid].kind in ("parameters", "buffers"):
            continue
        activation_bytes += records[uid].nbytes
        saved_by_module[owner or ""] = saved_by_module.get(owner or "", 0) + records[uid].nbytes
    modules = _module_table(state, saved_by_module)
    notes = []
    if device == "cuda":
        notes.append("kernels traced with CPU semantics (attention, convolution algorithms may differ)")
    world = opts.world_size if opts.sharding != "none" else 1
    return MemoryReport(
        model=name,
        method="estimate",
        device=device,
        dtype=str(dtype).removeprefix("torch."),
        optimizer=optimizer,
        batch_size=batch_size,
        input_shape=input_shape,
        peak_bytes=peak,
        peak_phase=peak_record.phase if peak_record else "setup",
        peak_module=peak_record.module if peak_record else None,
        peak_breakdown=breakdown,
        parameter_bytes=sum(_nbytes_unique(list(state.params.values()))),
        buffer_bytes=sum(r.nbytes for r in records.values() if r.kind == "buffers"),
        gradient_bytes=sum(state.grad_bytes.values()),
        optimizer_state_bytes=sum(state.state_bytes.values()),
        activation_bytes=activation_bytes,
        parameter_count=sum(p.numel() for p in state.params.values()),
        modules=modules,
        notes=notes,
        allocated_peak_bytes=allocator.peak_allocated,
        reserved_peak_bytes=allocator.peak_reserved,
        sharding=opts.sharding,
        world_size=world,
    )


def _nbytes_unique(tensors: list[torch.Tensor]) -> list[int]:
    seen: set[int] = set()
    out = []
    for t in tensors:
        key = storage_key(t)
        if key not in seen:
            seen.add(key)
            out.append(_nbytes(t))
    return out


def _module_table(state: _StepState, saved_by_module: dict[str, int]) -> list[ModuleMemory]:
    rows: dict[str, list[int]] = {}
    for pname, p in state.params.items():
        owner = pname.rpartition(".")[0]
        row = rows.setdefault(owner, [0, 0, 0, 0])
        row[0] += _nbytes(p)
        row[1] += state.grad_bytes.get(pname, 0)
        row[2] += state.state_bytes.get(pname, 0)
    for owner, nbytes in saved_by_module.items():
        rows.setdefault(owner, [0, 0, 0, 0])[3] += nbytes
    return [ModuleMemory(n, *v) for n, v in sorted(rows.items())]


def _with_elapsed(report: MemoryReport, elapsed: float) -> MemoryReport:
    return replace(report, elapsed_s=round(elapsed, 4))
