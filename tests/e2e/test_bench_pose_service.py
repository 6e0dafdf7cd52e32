"""benchmarks/pose_service.py runs end to end (bare loop, real service, WebSocket clients) and reports
figures that make sense; speed itself is the benchmark's business, so no timing thresholds here."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = (1, 2)
PER_N = ("fps", "service_vs_bare", "p50_ms", "p99_ms", "p99_ms_steady", "drop_rate", "latency_drift")


def test_short_run_reports_every_figure_with_sane_values(test_data: Path) -> None:
    assert (test_data / "multicam/videos/cam01.mp4").is_file()
    args = ["--seconds", "4", "--clients", ",".join(map(str, CLIENTS)), "--bare-seconds", "1"]
    done = subprocess.run(
        [sys.executable, "benchmarks/pose_service.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert len(lines) > len(CLIENTS), "a human-readable table comes before the JSON line"

    for key in ("bare_fps", "seconds", "backend", "cores", "peak_rss_mb"):
        assert key in result, key
    assert result["backend"] == "mediapipe"
    assert result["seconds"] == 4
    assert result["cores"] >= 1
    assert result["bare_fps"] > 0
    assert result["peak_rss_mb"] > 0
    for n in CLIENTS:
        figures = {name: result[f"{name}_{n}"] for name in PER_N}
        assert all(isinstance(v, int | float) and math.isfinite(v) for v in figures.values()), figures
        assert figures["fps"] > 0, figures
        # The figures are rounded in the JSON, hence the tolerance.
        bare = result[f"bare_fps_{n}"]
        assert bare > 0
        assert math.isclose(figures["service_vs_bare"], figures["fps"] / bare, rel_tol=0.02)
        # The machine's best case (one stream per core) beside the baseline of the same N streams.
        cores_fps = result[f"bare_fps_cores_{n}"]
        assert cores_fps > 0
        assert math.isclose(result[f"service_vs_cores_{n}"], figures["fps"] / cores_fps, rel_tol=0.02)
        assert 0 <= figures["drop_rate"] <= 1, figures
        assert 0 < figures["p50_ms"] <= figures["p99_ms"], figures
        assert 0 < figures["p50_ms"] <= figures["p99_ms_steady"], figures
        assert figures["latency_drift"] > 0, figures
