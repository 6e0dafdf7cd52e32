"""The training kit's cost and its recovery: kit vs plain loop, and resume after a SIGKILL.

``kit_vs_plain``: optimizer steps per second of the kit's loop (guard on every step, spike
check, JSON-line log, async checkpoints every ``--ckpt-every`` steps, default 500) over a plain
hand-written loop (same model, data order, batch, optimizer and scheduler), both in this process,
advanced in short alternating rounds of ``--round-steps`` steps each, so load that comes and goes
on a shared machine falls on both alike. Rounds are summed per checkpoint interval (one periodic
save per window; its background writer overlaps only the kit's steps); the figure is the median
of the windows' ratios, with their quartiles (``_q1``, ``_q3``), the lowest window and the ratio
over all rounds. Warm-up is left out of both, and so is the kit's final save-and-wait. Goal >= 0.95.

The step here is ~4 ms on a CPU, so 500 steps are a save every ~2 s: still far more often than a
real run saves (minutes), yet each save's cost (host copy, and a background writer that shares
the cores, the GIL and the disk with the loop: ~10-20 ms of the loop's time per save on a busy
2-core machine) no longer stands for the whole kit. The same comparison at ``--ckpt-every-frequent``
steps (default 100, a save every ~0.4 s) is reported as ``kit_vs_plain_ckpt<N>`` (with
``_q1``/``_q3``): the figure for an extreme cadence, where those saves alone cost a few percent.

``resume_s``: a child process trains with checkpoints every tenth of the frequent interval and is
SIGKILLed between two checkpoints; the time from starting it again to its first new step
(process start, imports, verified load included; ``resume_load_s`` is the part after the imports).
``lost_steps``: steps done before the kill that the resumed run does again (under the
checkpoint interval once the newest save is on disk, under twice that while it is being
written). The last output line is one JSON object.

    python benchmarks/training.py --windows 12 --round-steps 10 --ckpt-every 500 --ckpt-every-frequent 100
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


def train_config(name: str, root: Path, steps: int, ckpt_every: int, **extra: Any) -> TrainConfig:
    """The kit's configuration both measurements use: checkpoints and the log under ``root``."""
    return TrainConfig(
        run_name=name,
        max_steps=steps,
        global_batch_size=BATCH,
        checkpoint_dir=root / "ckpt",
        checkpoint_every_steps=ckpt_every,
        log_path=root / "run.jsonl",
        **extra,
    )


class PlainLoop:
    """The hand-written loop the kit is compared with, advanced `run(n)` steps at a time."""

    def __init__(self, dataset: TensorDataset) -> None:
        self.dataset = dataset
        self.model = model()
        self.opt = optimizer(self.model.parameters())
        self.sched = scheduler(self.opt)
        self.sampler = StepSampler(len(dataset), BATCH, seed=0)
        self.step = 0

    def run(self, n: int) -> float:
        """Seconds for the next `n` steps."""
        started = time.perf_counter()
        for _ in range(n):
            batch = fetch(self.dataset, self.sampler.indices(self.step))
            loss = loss_fn(self.model, batch)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.sched.step()
            self.step += 1
        return time.perf_counter() - started


class KitLoop:
    """The kit's loop (`Trainer.steps()`), advanced round by round.

    While a background checkpoint write is running, the kit's round goes on stepping past its
    target, so the writer overlaps only the kit's own steps (as in a real run), never the plain
    loop's; a write not done before the next save is waited for on the kit's clock (as the kit
    itself would wait at that save).
    """

    def __init__(self, dataset: TensorDataset, steps: int, ckpt_every: int, root: Path) -> None:
        config = train_config("bench", root, steps, ckpt_every)
        self.trainer = Trainer(config, model(), optimizer, dataset, loss_fn, scheduler_factory=scheduler)
        assert self.trainer.persist is not None
        self.persist = self.trainer.persist
        self.ckpt_every = ckpt_every
        self.steps = self.trainer.steps()
        self.extra_steps: list[int] = []  # steps a round went on while the writer was busy
        self.waits: list[float] = []  # seconds a round waited for the writer before a save

    def run_to(self, target: int) -> tuple[int, float]:
        """Step to `target` (and on while the writer is busy); steps done and seconds taken."""
        started, first = time.perf_counter(), self.trainer.step
        while self.trainer.step < target:
            next(self.steps)
        next_save = (self.trainer.step // self.ckpt_every + 1) * self.ckpt_every
        while self.persist.busy() and self.trainer.step < next_save - 1:
            next(self.steps)
        self.extra_steps.append(max(0, self.trainer.step - max(target, first)))
        if self.persist.busy():
            waited = time.perf_counter()
            self.persist.wait()
            self.waits.append(time.perf_counter() - waited)
        return self.trainer.step - first, time.perf_counter() - started

    def close(self) -> None:
        self.steps.close()


def compare(
    dataset: TensorDataset, windows: int, round_steps: int, ckpt_every: int, root: Path
) -> dict[str, Any]:
    """Kit and plain loop in short alternating rounds of `round_steps` steps (ABBA order), so
    load that comes and goes on a shared machine falls on both alike.

    The rounds are grouped in windows of one checkpoint interval (`ckpt_every` steps of each
    loop), so every window carries one periodic checkpoint of the kit, as the whole run does; a
    window's ratio is the kit's steps/s in it over the plain loop's. Rounds are aligned so that
    each save comes with a round's first step. Both loops first run a warm-up (first-call
    allocations, the kit's step-0 checkpoint) that is left out.
    """
    if ckpt_every % round_steps:
        raise ValueError("--ckpt-every must be a multiple of --round-steps")
    per_window = ckpt_every // round_steps
    warmup = ckpt_every // 2 - 1  # a multiple of ckpt_every is then a round's first step
    warmup -= (warmup + 1) % round_steps
    kit = KitLoop(dataset, warmup + (windows + 1) * ckpt_every, ckpt_every, root)
    plain = PlainLoop(dataset)
    kit.run_to(warmup)
    plain.run(warmup)
    kit.extra_steps.clear()
    kit.waits.clear()
    kit_rounds, plain_s = [], []
    try:
        for r in range(windows * per_window):
            target = warmup + (r + 1) * round_steps
            if r % 4 in (0, 3):
                kit_rounds.append(kit.run_to(target))
                plain_s.append(plain.run(round_steps))
            else:
                plain_s.append(plain.run(round_steps))
                kit_rounds.append(kit.run_to(target))
    finally:
        kit.close()
    ratios, kit_rates, plain_rates = [], [], []
    for w in range(0, len(plain_s), per_window):
        steps = sum(n for n, _ in kit_rounds[w : w + per_window])
        kit_rates.append(steps / sum(s for _, s in kit_rounds[w : w + per_window]))
        plain_rates.append(per_window * round_steps / sum(plain_s[w : w + per_window]))
        ratios.append(kit_rates[-1] / plain_rates[-1])
    q1, median, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    kit_all = sum(n for n, _ in kit_rounds) / sum(s for _, s in kit_rounds)
    return {
        "kit_steps_per_s": round(statistics.median(kit_rates), 2),
        "plain_steps_per_s": round(statistics.median(plain_rates), 2),
        "kit_vs_plain": round(median, 3),
        "kit_vs_plain_q1": round(q1, 3),
        "kit_vs_plain_q3": round(q3, 3),
        "kit_vs_plain_min": round(min(ratios), 3),
        "kit_vs_plain_all": round(kit_all / (len(plain_s) * round_steps / sum(plain_s)), 3),
        "writer_overlap_steps_max": max(kit.extra_steps),
        "writer_wait_ms_max": round(1000 * max(kit.waits, default=0.0), 2),
    }


def child(root: Path, steps: int, ckpt_every: int) -> None:
    """The process the resume measurement kills and restarts."""
    config = train_config("resume", root, steps, ckpt_every, log_every_steps=1)
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
    parser.add_argument("--windows", type=int, default=12, help="timed checkpoint intervals per cadence")
    parser.add_argument("--round-steps", type=int, default=10, help="steps of each loop per round")
    parser.add_argument("--ckpt-every", type=int, default=500, help="the kit's checkpoint interval")
    parser.add_argument(
        "--ckpt-every-frequent",
        type=int,
        default=100,
        help="a second, extreme checkpoint interval, reported as kit_vs_plain_ckpt<N> (0: not measured)",
    )
    parser.add_argument("--steps", type=int, default=60, help=argparse.SUPPRESS)  # the resume child's
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.steps, args.ckpt_every)
        return
    torch.set_num_threads(1)
    dataset = data()
    frequent = args.ckpt_every_frequent
    with tempfile.TemporaryDirectory() as tmp:
        speed = compare(dataset, args.windows, args.round_steps, args.ckpt_every, Path(tmp) / "kit")
        if frequent:
            often = compare(dataset, args.windows, args.round_steps, frequent, Path(tmp) / "often")
            speed.update(
                {
                    k.replace("kit_vs_plain", f"kit_vs_plain_ckpt{frequent}"): often[k]
                    for k in ("kit_vs_plain", "kit_vs_plain_q1", "kit_vs_plain_q3")
                }
            )
        resume = measure_resume(Path(tmp) / "resume", max(4, (frequent or args.ckpt_every) // 10))
    result = {
        "benchmark": "training",
        **speed,
        "ckpt_every": args.ckpt_every,
        "ckpt_every_frequent": frequent,
        "windows": args.windows,
        "round_steps": args.round_steps,
        "cores": os.cpu_count(),
        **resume,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
