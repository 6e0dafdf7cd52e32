"""The training kit's cost and its recovery: kit vs plain loop, and resume after a SIGKILL.

``kit_vs_plain``: optimizer steps per second of the kit's loop (guard on every step, spike
check, JSON-line log, async checkpoints) over a plain hand-written loop (same model, data order,
batch, optimizer and scheduler), both in this process, advanced in short alternating rounds of
``--round-steps`` steps each, so load that comes and goes on a shared machine falls on both alike.
Rounds are summed per checkpoint interval (one periodic save per window; its background writer
overlaps only the kit's steps); the figure is the median of the windows' ratios, with their
quartiles (``_q1``, ``_q3``), the lowest window and the ratio over all rounds. Warm-up is left out
of both, and so is the kit's final save-and-wait. Goal >= 0.95.

Two workloads (``--models``; the first one's figures carry no suffix, the others end in
``_<name>``):

* ``conv`` (the goal's): a small vision backbone, four conv-BN-ReLU blocks on 3x32x32 images,
  batch 16, ~18 ms a step on one core. Each weight is reused at every position of its feature map,
  as in the backbones and sequence models the kit is for.
* ``mlp``: the worst case for a guard, 400k parameters each used once per sample (768 FLOPs per
  parameter per step, ~3.6 ms a step). Reading every gradient once after backward, which a check of
  every gradient on every step has to do, is itself a few percent of that step.

``grad_read_share`` measures that floor on each workload: two plain loops in the same ABBA rounds,
one of them also taking one dot product of every gradient with itself between backward and the
optimizer step; the share of the step that read adds. What the kit costs above it is its own.

Checkpoints come every ~2 s of steps (conv 100, mlp 500): still far more often than a real run
saves (minutes), yet each save's cost (host copy, and a background writer that shares the cores,
the GIL and the disk with the loop: ~10-20 ms of the loop's time per save on a busy 2-core
machine) no longer stands for the whole kit. The same comparison with a save every ~0.4 s (conv 20,
mlp 100) is reported as ``kit_vs_plain_ckpt<N>`` (with ``_q1``/``_q3``): the figure for an extreme
cadence, where those saves alone cost a few percent. ``--cadence-scale`` scales both (a quick run).
``kit_skipped_steps`` counts steps the kit's spike check skipped (each one a step without an
optimizer step, so slightly cheaper).

``resume_s``: a child process (the mlp) trains with checkpoints every tenth of the frequent
interval and is SIGKILLed between two checkpoints; the time from starting it again to its first
new step (process start, imports, verified load included; ``resume_load_s`` is the part after the
imports). ``lost_steps``: steps done before the kill that the resumed run does again (under the
checkpoint interval once the newest save is on disk, under twice that while it is being
written). The last output line is one JSON object.

    python benchmarks/training.py --windows 12 --round-steps 10 --models conv,mlp
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import TensorDataset

from gpu_optimizer.training import StepSampler, TrainConfig, Trainer, read_log
from gpu_optimizer.training.data import fetch

CLASSES = 10
GOAL = 0.95  # kit_vs_plain of the first workload


def conv_data() -> TensorDataset:
    """2048 random 3x32x32 images; labels a function of their mean colour, 40% of them replaced by
    random ones, so the loss stays well above zero (off a near-zero median every wobble would be a
    loss spike for the kit to skip)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2048, 3, 32, 32, generator=gen)
    y = (x.mean(dim=(2, 3)) @ torch.randn(3, CLASSES, generator=gen)).argmax(dim=1)
    noisy = torch.rand(len(y), generator=gen) < 0.4
    y[noisy] = torch.randint(0, CLASSES, (int(noisy.sum()),), generator=gen)
    return TensorDataset(x, y)


def conv_model() -> torch.nn.Module:
    """A small vision backbone: four 3x3 conv-BN-ReLU blocks (32 to 128 channels), pooled, a linear
    head; 242k parameters, each reused at every position of its feature map."""
    torch.manual_seed(0)

    def block(cin: int, cout: int, stride: int) -> list[torch.nn.Module]:
        conv = torch.nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        return [conv, torch.nn.BatchNorm2d(cout), torch.nn.ReLU()]

    return torch.nn.Sequential(
        *block(3, 32, 1),
        *block(32, 64, 2),
        *block(64, 128, 2),
        *block(128, 128, 2),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(128, CLASSES),
    )


def mlp_data() -> TensorDataset:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8192, 256, generator=gen)
    y = (x[:, :CLASSES] * 3 + torch.randn(8192, CLASSES, generator=gen)).argmax(dim=1)
    return TensorDataset(x, y)


def mlp_model() -> torch.nn.Module:
    """400k parameters used once per sample: 768 FLOPs per parameter per step at batch 128."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(256, 512),
        torch.nn.ReLU(),
        torch.nn.Linear(512, 512),
        torch.nn.ReLU(),
        torch.nn.Linear(512, CLASSES),
    )


@dataclass(frozen=True)
class Workload:
    """A model and its data, with checkpoint cadences of about 2 s and 0.4 s of its CPU steps."""

    name: str
    data: Callable[[], TensorDataset]
    model: Callable[[], torch.nn.Module]
    batch: int
    ckpt_every: int
    ckpt_every_frequent: int


CONV = Workload("conv", conv_data, conv_model, 16, 100, 20)  # ~18 ms a step
MLP = Workload("mlp", mlp_data, mlp_model, 128, 500, 100)  # ~3.6 ms a step


def loss_fn(m: torch.nn.Module, batch: Any) -> torch.Tensor:
    x, y = batch
    return torch.nn.functional.cross_entropy(m(x), y)


def optimizer(params: Any) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-3)


def scheduler(opt: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 50))


def train_config(name: str, root: Path, steps: int, batch: int, ckpt_every: int, **extra: Any) -> TrainConfig:
    """The kit's configuration both measurements use: checkpoints and the log under ``root``."""
    return TrainConfig(
        run_name=name,
        max_steps=steps,
        global_batch_size=batch,
        checkpoint_dir=root / "ckpt",
        checkpoint_every_steps=ckpt_every,
        log_path=root / "run.jsonl",
        **extra,
    )


class PlainLoop:
    """The hand-written loop the kit is compared with, advanced `run(n)` steps at a time.

    With `read_grads`, each step also takes one dot product of every gradient with itself between
    backward and the optimizer step: the least any check of every gradient on every step costs."""

    def __init__(self, work: Workload, dataset: TensorDataset, read_grads: bool = False) -> None:
        self.dataset = dataset
        self.model = work.model()
        self.params = list(self.model.parameters())
        self.opt = optimizer(self.params)
        self.sched = scheduler(self.opt)
        self.sampler = StepSampler(len(dataset), work.batch, seed=0)
        self.read_grads = read_grads
        self.grad_norm = math.nan  # the last step's, when it reads the gradients
        self.step = 0

    def run(self, n: int) -> float:
        """Seconds for the next `n` steps."""
        started = time.perf_counter()
        for _ in range(n):
            batch = fetch(self.dataset, self.sampler.indices(self.step))
            loss = loss_fn(self.model, batch)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if self.read_grads:
                squares = 0.0
                for p in self.params:
                    g = p.grad.view(-1)
                    squares += float(torch.dot(g, g))
                self.grad_norm = math.sqrt(squares)
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

    def __init__(
        self, work: Workload, dataset: TensorDataset, steps: int, ckpt_every: int, root: Path
    ) -> None:
        config = train_config("bench", root, steps, work.batch, ckpt_every)
        self.trainer = Trainer(config, work.model(), optimizer, dataset, loss_fn, scheduler_factory=scheduler)
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
    work: Workload, dataset: TensorDataset, windows: int, round_steps: int, ckpt_every: int, root: Path
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
        raise ValueError("checkpoint intervals must be multiples of --round-steps")
    per_window = ckpt_every // round_steps
    warmup = ckpt_every // 2 - 1  # a multiple of ckpt_every is then a round's first step
    warmup -= (warmup + 1) % round_steps
    kit = KitLoop(work, dataset, warmup + (windows + 1) * ckpt_every, ckpt_every, root)
    plain = PlainLoop(work, dataset)
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
        "kit_skipped_steps": kit.trainer.skipped,
        "writer_overlap_steps_max": max(kit.extra_steps),
        "writer_wait_ms_max": round(1000 * max(kit.waits, default=0.0), 2),
    }


def grad_read_share(
    work: Workload, dataset: TensorDataset, windows: int, window_steps: int, round_steps: int
) -> float:
    """The fraction of the plain loop's step that one read of every gradient adds (`PlainLoop`
    with `read_grads`, same ABBA rounds and windows): the floor under what any guard that checks
    every gradient on every step costs on this model and machine."""
    bare, reading = PlainLoop(work, dataset), PlainLoop(work, dataset, read_grads=True)
    bare.run(window_steps // 2)
    reading.run(window_steps // 2)
    per_window = window_steps // round_steps
    ratios = []
    for _ in range(windows):
        spent = {False: 0.0, True: 0.0}
        for r in range(per_window):
            for loop in (bare, reading) if r % 4 in (0, 3) else (reading, bare):
                spent[loop.read_grads] += loop.run(round_steps)
        ratios.append(spent[False] / spent[True])
    return round(1 - statistics.median(ratios), 4)


def child(root: Path, steps: int, ckpt_every: int) -> None:
    """The process the resume measurement kills and restarts (the MLP: short steps, fast start)."""
    config = train_config("resume", root, steps, MLP.batch, ckpt_every, log_every_steps=1)
    Trainer(config, MLP.model(), optimizer, MLP.data(), loss_fn, scheduler_factory=scheduler).fit()


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


WORKLOADS = {w.name: w for w in (CONV, MLP)}


def measure(work: Workload, windows: int, round_steps: int, scale: float, root: Path) -> dict[str, Any]:
    """Kit vs plain at the workload's two checkpoint cadences (times `scale`), and its floor."""

    def cadence(steps: int) -> int:
        return max(round_steps, round(steps * scale / round_steps) * round_steps)

    every, often = cadence(work.ckpt_every), cadence(work.ckpt_every_frequent)
    dataset = work.data()
    out = compare(work, dataset, windows, round_steps, every, root / work.name)
    frequent = compare(work, dataset, windows, round_steps, often, root / f"{work.name}-often")
    for key in ("kit_vs_plain", "kit_vs_plain_q1", "kit_vs_plain_q3"):
        out[key.replace("kit_vs_plain", f"kit_vs_plain_ckpt{often}")] = frequent[key]
    out["grad_read_share"] = grad_read_share(work, dataset, windows, every, round_steps)
    out["ckpt_every"] = every
    out["ckpt_every_frequent"] = often
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=12, help="timed checkpoint intervals per cadence")
    parser.add_argument("--round-steps", type=int, default=10, help="steps of each loop per round")
    parser.add_argument(
        "--models",
        default="conv,mlp",
        help="workloads, comma-separated; the first one's figures carry no suffix (default conv,mlp)",
    )
    parser.add_argument(
        "--cadence-scale", type=float, default=1.0, help="scale the checkpoint intervals (a quick run: 0.2)"
    )
    parser.add_argument("--ckpt-every", type=int, default=10, help=argparse.SUPPRESS)  # the resume child's
    parser.add_argument("--steps", type=int, default=60, help=argparse.SUPPRESS)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.steps, args.ckpt_every)
        return
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = sorted(set(names) - set(WORKLOADS))
    if unknown or not names:
        parser.error(f"--models: choose from {', '.join(WORKLOADS)} (got {args.models!r})")
    torch.set_num_threads(1)
    result: dict[str, Any] = {"benchmark": "training", "model": names[0]}
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(names):
            figures = measure(WORKLOADS[name], args.windows, args.round_steps, args.cadence_scale, Path(tmp))
            suffix = "" if i == 0 else f"_{name}"
            result.update({f"{key}{suffix}": value for key, value in figures.items()})
        resume_every = max(4, round(MLP.ckpt_every_frequent * args.cadence_scale) // 10)
        resume = measure_resume(Path(tmp) / "resume", resume_every)
    result.update(
        {
            "goal_met": result["kit_vs_plain"] >= GOAL,
            "windows": args.windows,
            "round_steps": args.round_steps,
            "cores": os.cpu_count(),
            **resume,
        }
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
