"""The process group torchrun describes in the environment, and DDP / FSDP2 wrapping.

torchrun (torch.distributed.elastic) starts the workers, sets RANK, WORLD_SIZE, LOCAL_RANK and
the rendezvous, and restarts the whole group when a worker dies (TORCHELASTIC_RESTART_COUNT
counts the restarts); the kit only joins the group it is given.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch._C._distributed_c10d import PrefixStore, Store, TCPStore
from torch.nn.parallel import DistributedDataParallel

from gpu_optimizer.training.config import Strategy


@dataclass(frozen=True)
class DistContext:
    rank: int
    world: int
    local_rank: int
    device: torch.device
    restart_count: int

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str | None = None) -> DistContext:
    """Join the process group torchrun set up (gloo on CPU, NCCL on CUDA); one process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    restarts = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    kind = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(kind, local_rank) if kind == "cuda" else torch.device(kind)
    if kind == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if kind == "cuda" else "gloo"
        dist.init_process_group(
            backend, store=_attempt_store(rank, world, restarts), rank=rank, world_size=world
        )
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    return DistContext(rank, world, local_rank, dev, restarts)


def _attempt_store(rank: int, world: int, restarts: int) -> Store:
    """The rendezvous store with keys private to this restart attempt.

    Without the prefix, workers of a restarted group read the addresses the dead group left in
    the store and time out connecting to them (seen with gloo on torch 2.14 under torchrun
    --max-restarts).
    """
    host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    timeout = timedelta(seconds=int(os.environ.get("GPUOPT_DIST_TIMEOUT_S", "300")))
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        base = TCPStore(host, port, world, is_master=False, timeout=timeout)
    else:
        base = TCPStore(host, port, world, is_master=rank == 0, timeout=timeout, multi_tenant=True)
    return PrefixStore(f"gpu_optimizer.training/attempt-{restarts}", base)


def wrap_model(model: torch.nn.Module, ctx: DistContext, strategy: Strategy) -> torch.nn.Module:
    """DDP or FSDP2 (`fully_shard` of every direct child with parameters, then of the root)."""
    model = model.to(ctx.device)
    if not ctx.distributed:
        return model
    if strategy == "ddp":
        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(ctx.device.type, (ctx.world,))
    for child in model.children():
        if any(p.requires_grad for p in child.parameters()):
            fully_shard(child, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


@contextlib.contextmanager
def no_grad_sync(model: torch.nn.Module, sync: bool) -> Iterator[None]:
    """Skip the gradient all-reduce on all but the last micro-batch of an accumulated step."""
    if sync:
        yield
        return
    if isinstance(model, DistributedDataParallel):
        with model.no_sync():
            yield
        return
    setter = getattr(model, "set_requires_gradient_sync", None)
    if setter is None:
        yield
        return
    setter(False)
    try:
        yield
    finally:
        setter(True)


def all_mean(value: float, ctx: DistContext) -> float:
    """The mean of a float over the ranks (the value itself in one process)."""
    if not ctx.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return float(t.item()) / ctx.world


def broadcast_flag(flag: bool, ctx: DistContext) -> bool:
    """Rank 0's decision on every rank."""
    if not ctx.distributed:
        return flag
    t = torch.tensor([1 if flag else 0], device=ctx.device)
    dist.broadcast(t, src=0)
    return bool(t.item())
