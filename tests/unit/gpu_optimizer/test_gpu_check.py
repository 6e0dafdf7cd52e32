"""`make gpu-check` without a GPU: it runs, runs the GPU tests (all skipped), reports every GPU
figure as skipped, and prints one JSON object last."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[3]
GPU_FIGURES = (
    "estimate_vs_allocator",
    "batch_finder_vs_oom",
    "swap_benchmark_pinned",
    "checkpoint_benchmark_pinned",
    "yolo11n_pose_throughput",
)


def test_gpu_check_runs_without_a_gpu_and_reports_every_figure_skipped(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here: `make gpu-check` measures instead")
    out = tmp_path / "gpu-check.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert json.loads(out.read_text()) == last
    assert last["cuda"] is False
    for key in GPU_FIGURES:
        assert last[key] == {"skipped": "no CUDA device"}, key
    tests = last["gpu_tests"]
    gpu_files = list((ROOT / "tests" / "gpu").glob("test_*.py"))
    assert tests["exit_code"] == 0
    assert tests["failures"] == tests["errors"] == tests["passed"] == 0
    assert tests["skipped"] == tests["tests"] >= len(gpu_files)
