"""The Makefile offers the targets users know, and `make help` lists them."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TARGETS = [
    "install",
    "validate",
    "validate-cuda",
    "download-models",
    "test",
    "test-simd",
    "lint",
    "format",
    "run-pose",
    "run-vram",
    "run-all",
    "stop-all",
    "dev-session",
    "bench",
    "gpu-check",
    "clean",
    "help",
    "lock",
    "observe",
    "fleet-targets",
    "compose-up",
    "compose-down",
]


def make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=60)


def test_help_is_the_default_and_lists_every_target() -> None:
    out = re.sub(r"\x1b\[[0-9;]*m", "", make().stdout)
    for target in TARGETS:
        assert f" {target} " in out, f"`make help` does not list {target}"


@pytest.mark.parametrize("target", TARGETS)
def test_target_exists(target: str) -> None:
    done = make("-n", target)
    assert done.returncode == 0, done.stderr


def test_bench_runs_every_bench_target() -> None:
    rules = make("-pn", "bench").stdout
    bench_line = next(line for line in rules.splitlines() if line.startswith("bench:"))
    declared = {
        line.split(":")[0] for line in rules.splitlines() if line.startswith("bench-") and ":" in line
    }
    assert declared, "no bench-* targets"
    assert declared <= set(bench_line.split(":", 1)[1].split())


def test_pixi_tasks_mirror_the_makefile() -> None:
    import tomllib

    tasks = tomllib.loads((ROOT / "pixi.toml").read_text())["tasks"]
    for target in [
        "validate",
        "validate-cuda",
        "download-models",
        "test",
        "lint",
        "format",
        "run-pose",
        "run-vram",
    ]:
        assert target in tasks, f"pixi.toml has no task {target}"
