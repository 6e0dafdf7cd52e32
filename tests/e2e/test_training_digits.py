"""The digits example trains through the kit to >= 95% test accuracy on CPU, reported live to the service."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.e2e.harness import StartService, http_json

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits" / "train_digits.py"


def test_digits_reach_95_percent_and_report_live(start_service: StartService, tmp_path: Path) -> None:
    service = start_service(
        "gpu_optimizer",
        "GPUOPT_",
        database_url=f"sqlite:///{tmp_path}/gpu.db",
        checkpoint_root=str(tmp_path / "ckpt"),
    )
    cmd = [sys.executable, str(EXAMPLE), "--run-name", "digits-e2e", "--service-url", service.url]
    cmd += ["--checkpoint-dir", str(tmp_path / "ckpt"), "--log", str(tmp_path / "digits.jsonl")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["test_accuracy"] >= 0.95, summary

    status, run = http_json("GET", f"{service.url}/api/runs/digits-e2e")
    assert status == 200
    assert isinstance(run, dict)
    assert run["status"] == "finished"
    assert run["step"] == summary["steps"]
    # Listed live: the service recorded the run's reports while it trained (the registry keeps
    # the first `running` report and counts them; a run only ever reported finished has none).
    assert run["running_reports"] >= 1, run
    assert 0 < run["first_step"] <= summary["steps"], run
    assert run["created_at"] <= run["started_at"] <= run["updated_at"], run
    assert abs(run["eval"]["accuracy"] - summary["test_accuracy"]) < 1e-4
    with urllib.request.urlopen(f"{service.url}/metrics", timeout=30) as resp:
        metrics = resp.read().decode()
    assert f'gpuopt_training_step{{run="digits-e2e"}} {float(summary["steps"])}' in metrics
