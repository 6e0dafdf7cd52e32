"""The training kit's cost and its recovery: kit vs plain loop, and resume after a SIGKILL.

``kit_vs_plain``: optimizer steps per second of the kit's loop (guard on every step, spike
check, JSON-line log, async checkpoints every ``--ckpt-every`` steps) over a plain hand-written
loop (same model, data order, batch, optimizer and scheduler), in rounds that alternate the two
so drift in the shared machine's load does not favour either. Both leave out their first
``WARMUP`` steps; the kit's final save-and-wait (once per run) is not in its time. Goal >= 0.95.

``resume_s``: a child process trains with checkpoints every ``--ckpt-every`` steps and is
SIGKILLed between two checkpoints; the time from starting it again to its first new step
(process start, imports, verified load included; ``resume_load_s`` is the part after the imports).
``lost_steps``: steps done before the kill that the resumed run does again (at most the
checkpoint interval). The last output line is one JSON object.

    python benchmarks/training.py --steps 200 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import TensorDataset

from gpu_optimizer.training import StepSampler, TrainConfig, Trainer, read_log
from gpu_optimizer.training.data import fetch

FEATURES, HIDDEN, CLASSES, BATCH = 256, 512, 10, 128


def data() -> TensorDataset:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8192, FEATURES, generator=gen)
    y = (x[:, :CLASSES] * 3 + torch.randn(8192, CLASSES, generator=gen)).argmax(dim=1)
    return TensorDataset(x, y)


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(FEATURES, HIDDEN),
        torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN, HIDDEN),
        torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN, CLASSES),
    )


def loss_fn(m: torch.nn.Module, batch: Any) -> torch.Tensor:
    x, y = batch
    return torch.nn.functional.cross_entropy(m(x), y)


def optimizer(params: Any) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-3)


def scheduler(opt: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 50))


WARMUP = 10  # steps left out of both timings (first-call allocations, the kit's step-0 checkpoint)


def plain_steps_per_s(dataset: TensorDataset, steps: int) -> float:
    m = model()
    opt = optimizer(m.parameters())
    sched = scheduler(opt)
    sampler = StepSampler(len(dataset), BATCH, seed=0)
    started = 0.0
    for step in range(steps):
        if step == WARMUP:
            started = time.perf_counter()
        batch = fetch(dataset, sampler.indices(step))
        loss = loss_fn(m, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return (steps - WARMUP) / (time.perf_counter() - started)


def kit_steps_per_s(dataset: TensorDataset, steps: int, ckpt_every: int, root: Path) -> float:
    """Steps per second between the progress lines of steps WARMUP and `steps`: every periodic
    async checkpoint falls inside; the final save-and-wait of `fit()` does not."""
    config = TrainConfig(
        run_name="bench",
        max_steps=steps,
        global_batch_size=BATCH,
        checkpoint_dir=root / "ckpt",
        checkpoint_every_steps=ckpt_every,
        log_path=root / "run.jsonl",
        log_every_steps=WARMUP,
    )
    Trainer(config, model(), optimizer, dataset, loss_fn, scheduler_factory=scheduler).fit()
    times = {e["step"]: e["ts"] for e in read_log(root / "run.jsonl") if e["event"] == "progress"}
    return (steps - WARMUP) / (times[steps] - times[WARMUP])


def child(root: Path, steps: int, ckpt_every: int) -> None:
    """The process the resume measurement kills and restarts."""
    config = TrainConfig(
        run_name="resume",
        max_steps=steps,
        global_batch_size=BATCH,
        checkpoint_dir=root / "ckpt",
        checkpoint_every_steps=ckpt_every,
        log_path=root / "run.jsonl",
        log_every_steps=1,
    )
    Trainer(config, model(), optimizer, data(), loss_fn, scheduler_factory=scheduler).fit()


def measure_resume(root: Path, ckpt_every: int) -> dict[str, float]:
    log = root / "run.jsonl"
    steps = ckpt_every * 6
    cmd = [
        sys.executable,
        __file__,
        "--child",
        str(root),
        "--steps",
        str(steps),
        "--ckpt-every",
        str(ckpt_every),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(cmd, env=env)
    kill_after = ckpt_every * 2 + ckpt_every // 2  # between two checkpoints
    while True:
        events = read_log(log) if log.exists() else []
        done = [e["step"] for e in events if e["event"] == "progress"]
        if done and done[-1] >= kill_after:
            break
        if first.poll() is not None:
            raise RuntimeError("the child ended before it was killed")
        time.sleep(0.01)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    last_done = max(e["step"] for e in read_log(log) if e["event"] == "progress")
    before = len(read_log(log))
    restarted = time.time()
    second = subprocess.Popen(cmd, env=env)
    while True:
        events = read_log(log)[before:]
        resume = next((e for e in events if e["event"] == "resume"), None)
        step = next((e for e in events if e["event"] == "progress"), None)
        if step is not None and resume is not None:
            break
        if second.poll() is not None:
            raise RuntimeError("the restarted child ended without a step")
        time.sleep(0.005)
    second.wait()
    return {
        "resume_s": round(step["ts"] - restarted, 3),
        "resume_load_s": round(step["ts"] - resume["ts"], 3),
        "lost_steps": last_done - resume["step"],
        "checkpoint_every": ckpt_every,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ckpt-every", type=int, default=100)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.steps, args.ckpt_every)
        return
    torch.set_num_threads(1)
    dataset = data()
    kit, plain = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            plain.append(plain_steps_per_s(dataset, args.steps))
            kit.append(kit_steps_per_s(dataset, args.steps, args.ckpt_every, Path(tmp) / f"kit{r}"))
            print(f"round {r}: kit {kit[-1]:.1f} steps/s, plain {plain[-1]:.1f} steps/s", flush=True)
        resume = measure_resume(Path(tmp) / "resume", max(4, args.ckpt_every // 10))
    result = {
        "benchmark": "training",
        "kit_steps_per_s": round(statistics.median(kit), 2),
        "plain_steps_per_s": round(statistics.median(plain), 2),
        "kit_vs_plain": round(statistics.median(k / p for k, p in zip(kit, plain, strict=True)), 3),
        "steps": args.steps,
        "rounds": args.rounds,
        "cores": os.cpu_count(),
        **resume,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
