"""Measure a real training step on the CPU with the allocator's own events (torch.profiler).

The reference the estimator is checked against: `torch.profiler` with `profile_memory=True`
records every allocation and free of the CPU allocator; the peak of their running sum, plus what
was alive when the step started (parameters, buffers, optimizer state, inputs, accumulated
gradients), is the step's peak.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from gpu_optimizer.profiling.estimator import LossFn, sum_loss
from gpu_optimizer.profiling.kernel_scratch import allocation_peak
from gpu_optimizer.profiling.optimizers import build_optimizer
from gpu_optimizer.profiling.options import StepOptions


def _storages_bytes(tensors: list[torch.Tensor]) -> int:
    seen: dict[int, int] = {}
    for t in tensors:
        st = t.untyped_storage()
        seen[int(st._cdata)] = int(st.nbytes())
    return sum(seen.values())


def profiler_peak(run: Callable[[], Any]) -> int:
    """Peak of the running sum of the CPU allocator's events while `run()` executes."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    assert prof.profiler is not None
    peak, _ = allocation_peak(prof.profiler.kineto_results.experimental_event_tree())
    return peak


def measure_cpu_step(
    build: Callable[[], torch.nn.Module],
    inputs: torch.Tensor,
    *,
    dtype: torch.dtype = torch.float32,
    optimizer: str = "adamw",
    loss_fn: LossFn | None = None,
    options: StepOptions | None = None,
) -> int:
    """Peak bytes of a steady-state training step on the CPU: a first step creates the optimizer
    state, the second is measured. Honours the options the estimator models on one process
    (autocast, checkpointing, keep_output, accumulate_gradients, optimizer_impl)."""
    opts = options or StepOptions()
    loss_of = loss_fn or sum_loss
    torch.manual_seed(0)
    model = build().to(dtype=dtype).train()
    blocks = [model.get_submodule(n) for n in opts.checkpoint_blocks]
    for block in blocks:
        original = block.forward
        block.forward = lambda *a, _f=original, **k: torch.utils.checkpoint.checkpoint(
            _f, *a, use_reentrant=False, preserve_rng_state=False, **k
        )
    trainable = [p for p in model.parameters() if p.requires_grad]
    impl = opts.optimizer_impl or "single"
    opt = build_optimizer(
        optimizer, trainable, foreach=impl == "foreach" or None, fused=impl == "fused" or None
    )

    def step() -> None:
        amp = (
            torch.autocast("cpu", dtype=opts.autocast_dtype)
            if opts.autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with amp:
            output = model(inputs)
            loss = loss_of(output)
        if not opts.keep_output:
            del output
        torch.autograd.backward(loss)
        del loss
        opt.step()

    step()
    opt.zero_grad(set_to_none=not opts.accumulate_gradients)
    state = [t for st in opt.state.values() for t in st.values() if isinstance(t, torch.Tensor)]
    grads = [p.grad for p in trainable if p.grad is not None]
    alive = _storages_bytes([*model.parameters(), *model.buffers(), *state, *grads, inputs])
    return alive + profiler_peak(step)


def _profiled_steps(step: Callable[[], None], opt: torch.optim.Optimizer, repeats: int = 3) -> list[int]:
    """The profiler's peak of ``repeats`` steps, each from the same state (no gradients).

    gloo frees a collective's buffers from its own thread, so how many are still alive at the
    peak depends on when that thread ran: 43.4 and 46.6 MB were seen for one schedule, and 49.2 MB
    on a loaded machine.  The lowest of a few steps is the schedule's own peak, the one a device
    with stream-ordered frees (NCCL) reaches; the others are that peak plus late frees.
    """
    peaks = []
    for _ in range(repeats):
        opt.zero_grad(set_to_none=True)
        peaks.append(profiler_peak(step))
    return peaks


def _fsdp_worker(
    rank: int,
    world_size: int,
    port: int,
    build: Callable[[], torch.nn.Module],
    units: list[str],
    inputs: torch.Tensor,
    loss_fn: LossFn,
    peaks: Any,
) -> None:
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        torch.manual_seed(0)
        model = build().train()
        for name in units:
            fully_shard(model.get_submodule(name))
        fully_shard(model)
        opt = build_optimizer("adamw", list(model.parameters()))

        def step() -> None:
            loss = loss_fn(model(inputs))
            torch.autograd.backward(loss)
            del loss
            opt.step()

        step()
        opt.zero_grad(set_to_none=True)
        state = [t for st in opt.state.values() for t in st.values() if isinstance(t, torch.Tensor)]
        local = [getattr(t, "to_local", lambda t=t: t)() for t in [*model.parameters(), *state]]
        alive = _storages_bytes([*local, inputs])
        peaks[rank] = alive + min(_profiled_steps(step, opt))
    finally:
        dist.destroy_process_group()


def measure_fsdp_cpu(
    build: Callable[[], torch.nn.Module],
    inputs: torch.Tensor,
    units: list[str],
    *,
    loss_fn: LossFn,
    world_size: int = 2,
) -> list[int]:
    """Per-rank peak bytes of a steady-state FSDP2 (fully_shard) AdamW step on CPU over gloo.

    Runs `world_size` real processes; each shards `units`, then the root, and measures its second
    step with the profiler. `build` and `loss_fn` must be picklable (module-level functions).
    """
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    with mp.Manager() as manager:
        peaks = manager.dict()
        mp.spawn(  # type: ignore[attr-defined,no-untyped-call]
            _fsdp_worker, args=(world_size, port, build, units, inputs, loss_fn, peaks), nprocs=world_size
        )
        return [int(peaks[r]) for r in range(world_size)]
