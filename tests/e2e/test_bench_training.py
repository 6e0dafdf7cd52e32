"""benchmarks/training.py runs end to end (kit and plain loop on both workloads, the gradient-read
floor, a SIGKILL and resume) and reports figures that make sense; speed itself is the benchmark's
business, so no timing thresholds here."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PER_MODEL = ("kit_vs_plain", "kit_vs_plain_q1", "kit_vs_plain_q3", "kit_steps_per_s", "plain_steps_per_s")


def _bench(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "benchmarks/training.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_short_run_reports_both_workloads_and_the_resume() -> None:
    done = _bench("--windows", "2", "--cadence-scale", "0.2", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])

    assert result["benchmark"] == "training"
    assert result["model"] == "conv"  # the first workload's figures carry no suffix
    assert result["goal_met"] is (result["kit_vs_plain"] >= 0.95)
    for suffix, every, often in (("", 20, 10), ("_mlp", 100, 20)):
        figures = {name: result[f"{name}{suffix}"] for name in PER_MODEL}
        assert all(isinstance(v, int | float) and math.isfinite(v) for v in figures.values()), figures
        assert min(figures.values()) > 0, figures
        assert figures["kit_vs_plain_q1"] <= figures["kit_vs_plain"] <= figures["kit_vs_plain_q3"], figures
        # The cadences scaled by 0.2 and rounded to whole rounds of 10 steps.
        assert result[f"ckpt_every{suffix}"] == every
        assert result[f"ckpt_every_frequent{suffix}"] == often
        assert math.isfinite(result[f"kit_vs_plain_ckpt{often}{suffix}"])
        assert -1 < result[f"grad_read_share{suffix}"] < 1
        assert result[f"kit_skipped_steps{suffix}"] >= 0
    # Killed between two checkpoints: what is redone is under two intervals.
    assert result["resume_s"] > 0
    assert 0 <= result["lost_steps"] < 2 * result["checkpoint_every"]


def test_an_unknown_workload_is_refused_with_the_choices() -> None:
    done = _bench("--models", "conv,resnet", timeout=120)
    assert done.returncode == 2
    assert "choose from conv, mlp" in done.stderr
