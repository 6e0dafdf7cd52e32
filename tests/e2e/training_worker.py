"""Worker of the elastic resume test: a tiny model trained by the kit on gloo, under torchrun.

Run it under `torchrun --nproc-per-node 2 --max-restarts K` or with `--launch N` (the same
torch.distributed.elastic agent torchrun runs, started here with the fork start method so a
restart does not pay for importing torch again: on the shared 2-core test machine that import
alone takes 3-7 s).

`--kill-plan "1:0:7,2:1:13"` SIGKILLs rank 0 at step 7 on restart attempt 1
(TORCHELASTIC_RESTART_COUNT), rank 1 at step 13 on attempt 2, ... ("attempt:rank:step").
Rank 0 writes the final parameters as safetensors to `--out`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "gpu_optimizer"))

from training_helpers import adam, ce_loss, make_data, make_model, warmup

from gpu_optimizer.training import TrainConfig, Trainer, init_distributed


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--every", type=int, default=4)
    parser.add_argument("--strategy", default="ddp")
    parser.add_argument("--kill-plan", default="")
    parser.add_argument("--launch", type=int, default=0, help="start N workers with the elastic agent")
    parser.add_argument("--max-restarts", type=int, default=0)
    return parser.parse_args(argv)


def train(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    ctx = init_distributed("cpu")
    plan = {}
    for item in filter(None, args.kill_plan.split(",")):
        attempt, rank, step = (int(v) for v in item.split(":"))
        plan[attempt] = (rank, step)
    config = TrainConfig(
        run_name="elastic",
        max_steps=args.steps,
        global_batch_size=16,
        seed=5,
        micro_batch_size=4,
        checkpoint_dir=args.root / "ckpt",
        checkpoint_every_steps=args.every,
        log_path=args.root / "run.jsonl",
        strategy=args.strategy,
    )
    trainer: Trainer | None = None

    def loss(model: torch.nn.Module, batch: Any) -> torch.Tensor:
        if trainer is not None and plan.get(ctx.restart_count) == (ctx.rank, trainer.step):
            os.kill(os.getpid(), signal.SIGKILL)
        return ce_loss(model, batch)

    trainer = Trainer(config, make_model(), adam, make_data(), loss, scheduler_factory=warmup, ctx=ctx)
    trainer.fit()
    # Collective for FSDP2 (gathers the shards); the keys carry no DDP "module." prefix.
    state = get_model_state_dict(trainer.model, options=StateDictOptions(full_state_dict=True))
    if ctx.is_main:
        save_file({k: v.contiguous() for k, v in state.items()}, str(args.out))
    torch.distributed.destroy_process_group()


def launch(args: argparse.Namespace) -> None:
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=args.launch,
        run_id=uuid.uuid4().hex,
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=args.max_restarts,
        monitor_interval=0.1,
        start_method="fork",
    )
    args.launch = 0
    elastic_launch(config, train)(args)


if __name__ == "__main__":
    arguments = parse()
    if arguments.launch:
        launch(arguments)
    else:
        train(arguments)
