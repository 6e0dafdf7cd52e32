"""Exact auto-resume on torch.distributed.elastic: two gloo workers, one SIGKILLed ten times.

Each restart attempt kills one rank (chosen at random) at a random step; the elastic agent
restarts the whole group and every rank resumes from the newest checkpoint whose hashes verify.
The final parameters must equal those of the same run never interrupted.

Tolerance: none. A resumed run replays the same floating-point operations in the same order on
the same inputs (the data order is a function of the step, micro-batches and the 2-rank gloo sum
are fixed, the RNG states of both ranks and the optimizer, scheduler and model state are
restored bit for bit from safetensors/DCP), so any difference at all means some state was lost.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gpu_optimizer.training import read_log
from tests.unit.gpu_optimizer.training_helpers import make_model

WORKER = Path(__file__).with_name("training_worker.py")
STEPS, EVERY, TRIALS = 60, 4, 10


def _run(root: Path, out: Path, *extra: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(WORKER), "--root", str(root), "--out", str(out), "--steps", str(STEPS)]
    cmd += ["--every", str(EVERY), *extra]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-4000:]


def _kill_and_compare(tmp_path: Path, strategy: str, trials: int) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    kill_steps = sorted(rng.sample(range(1, STEPS), trials))
    plan = [(attempt, rng.randrange(2), step) for attempt, step in enumerate(kill_steps)]
    plan_text = ",".join(f"{a}:{r}:{s}" for a, r, s in plan)
    common = ["--launch", "2", "--strategy", strategy]

    _run(tmp_path / "ref", tmp_path / "ref.safetensors", *common)
    killed = ["--max-restarts", str(trials), "--kill-plan", plan_text]
    _run(tmp_path / "killed", tmp_path / "killed.safetensors", *common, *killed)

    reference = load_file(tmp_path / "ref.safetensors")
    resumed = load_file(tmp_path / "killed.safetensors")
    assert reference.keys() == resumed.keys()
    for key, value in reference.items():
        assert torch.equal(value, resumed[key]), f"{key} differs (kill plan {plan_text}, seed {seed})"

    events = read_log(tmp_path / "killed" / "run.jsonl")
    resumes = [e for e in events if e["event"] == "resume"]
    assert [e["restarts"] for e in resumes] == list(range(1, trials + 1))
    for (_, _, killed_at), resume in zip(plan, resumes, strict=True):
        lost = killed_at - resume["step"]
        assert 0 <= lost < EVERY, (killed_at, resume["step"])
    assert {e["config_digest"] for e in events} == {events[0]["config_digest"]}
    assert events[-1]["event"] == "finished"
    assert events[-1]["step"] == STEPS


@pytest.mark.slow
def test_sigkilled_ddp_ranks_resume_to_the_uninterrupted_parameters(tmp_path: Path) -> None:
    _kill_and_compare(tmp_path, "ddp", TRIALS)


@pytest.mark.slow
def test_sigkilled_fsdp2_ranks_resume_to_the_uninterrupted_parameters(tmp_path: Path) -> None:
    """FSDP2 shards each parameter over the two ranks: every shard and its optimizer state resume."""
    _kill_and_compare(tmp_path, "fsdp", 3)


@pytest.mark.slow
def test_gpu_optimizer_train_restarts_a_killed_worker_through_torchrun(tmp_path: Path) -> None:
    """The `train` command runs the plain torchrun CLI; a SIGKILLed rank is restarted and resumes."""
    root, out = tmp_path / "cli", tmp_path / "cli.safetensors"
    cli = Path(sys.executable).with_name("gpu-optimizer")  # the console script of this venv
    cmd = [str(cli), "train", str(WORKER), "--nproc-per-node", "2"]
    cmd += ["--max-restarts", "1", "--", "--root", str(root), "--out", str(out), "--steps", "12"]
    cmd += ["--every", str(EVERY), "--kill-plan", "0:1:6"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    events = read_log(root / "run.jsonl")
    (resume,) = [e for e in events if e["event"] == "resume"]
    assert (resume["restarts"], resume["step"]) == (1, 4)
    assert events[-1]["event"] == "finished"
    assert load_file(out).keys() == set(make_model().state_dict())
