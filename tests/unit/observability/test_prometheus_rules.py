"""Prometheus config and rules checked and unit-tested by Prometheus' own promtool."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PROM = ROOT / "prometheus"
promtool = shutil.which("promtool")
pytestmark = pytest.mark.skipif(promtool is None, reason="promtool missing (make test installs prometheus)")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    assert promtool is not None
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60, cwd=PROM)


def test_config_and_rule_files_are_valid(tmp_path: Path) -> None:
    # promtool checks that the key files exist: they are written by scripts/fleet_targets.py (and
    # ignored by git), so the check runs on a copy beside a deploy/prometheus/ with them.
    shutil.copytree(PROM, tmp_path / "prometheus")
    deploy = tmp_path / "deploy" / "prometheus"
    script = ROOT / "scripts" / "fleet_targets.py"
    fleet = subprocess.run(
        [
            sys.executable,
            str(script),
            "--hosts",
            "127.0.0.1",
            "--out",
            str(deploy / "targets"),
            "--keys",
            str(deploy / "keys"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert fleet.returncode == 0, fleet.stderr
    assert promtool is not None
    done = subprocess.run(
        [promtool, "check", "config", "prometheus.yml"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path / "prometheus",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rules = sorted(str(p.relative_to(PROM)) for p in (PROM / "rules").glob("*.yml"))
    assert rules
    done = run("check", "rules", *rules)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("test_file", sorted(p.name for p in (PROM / "tests").glob("*_test.yml")))
def test_rule_unit_tests_pass(test_file: str) -> None:
    done = run("test", "rules", f"tests/{test_file}")
    assert done.returncode == 0, done.stdout + done.stderr


def test_dcgm_names_cover_dashboard_12239() -> None:
    text = (PROM / "rules" / "dcgm_compat.yml").read_text()
    for name in (
        "DCGM_FI_DEV_FB_USED",
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_GPU_TEMP",
        "DCGM_FI_DEV_POWER_USAGE",
        "DCGM_FI_DEV_SM_CLOCK",
        "DCGM_FI_DEV_MEM_CLOCK",
        "DCGM_FI_DEV_FB_FREE",
    ):
        assert f"record: {name}\n" in text
