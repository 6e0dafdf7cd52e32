"""The digits example trains through the kit to >= 95% test accuracy on CPU, listed live in the service."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
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
    # 400 steps last a second or two here: long enough to be seen running by a 20 Hz poll.
    cmd = [
        sys.executable,
        str(EXAMPLE),
        "--run-name",
        "digits-e2e",
        "--steps",
        "400",
        "--service-url",
        service.url,
    ]
    cmd += ["--checkpoint-dir", str(tmp_path / "ckpt"), "--log", str(tmp_path / "digits.jsonl")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    live: dict[str, object] | None = None
    try:
        # Poll while the trainer runs: the run must appear with progress before it ends.
        while proc.poll() is None and live is None:
            status, runs = http_json("GET", f"{service.url}/api/runs")
            assert status == 200
            assert isinstance(runs, list)
            for run in runs:
                if run["name"] == "digits-e2e" and run["status"] == "running" and run["step"] > 0:
                    live = run
            time.sleep(0.05)
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    assert live is not None, "the run was never listed as running while it trained"
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["test_accuracy"] >= 0.95, summary

    status, run = http_json("GET", f"{service.url}/api/runs/digits-e2e")
    assert status == 200
    assert isinstance(run, dict)
    assert run["status"] == "finished"
    assert run["step"] == summary["steps"]
    assert abs(run["eval"]["accuracy"] - summary["test_accuracy"]) < 1e-4
    with urllib.request.urlopen(f"{service.url}/metrics", timeout=30) as resp:
        metrics = resp.read().decode()
    assert f'gpuopt_training_step{{run="digits-e2e"}} {float(summary["steps"])}' in metrics
