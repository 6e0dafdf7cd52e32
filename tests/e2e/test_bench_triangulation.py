"""benchmarks/triangulation.py runs end to end on real frames and reports figures that make sense;
speed itself is the benchmark's business, so no timing threshold here."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_bench_triangulation_prints_one_json_object_last() -> None:
    run = subprocess.run(
        [sys.executable, "benchmarks/triangulation.py", "--frames", "8", "--warmup", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["benchmark"] == "triangulation"
    assert result["groups"] == 6
    assert result["detect_ms_per_group"] > 0
    assert result["triangulate_analyse_ms_per_group"] > 0
    assert 0 < result["triangulation_vs_detection"] < 1
    assert result["meets_goal"] == (result["triangulation_vs_detection"] <= 0.02)
