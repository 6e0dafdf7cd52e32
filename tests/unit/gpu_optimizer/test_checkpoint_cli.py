"""`checkpoints` CLI: list and verify, with the exit code telling a script whether all verify."""

from __future__ import annotations

from pathlib import Path

import torch
from typer.testing import CliRunner

from gpu_optimizer.checkpoints import CheckpointManager
from gpu_optimizer.checkpoints.cli import app


def test_list_and_verify_report_a_corrupted_checkpoint(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, "run")
    manager.save(1, torch.nn.Linear(3, 3), metrics={"loss": 0.25})
    second = manager.save(2, torch.nn.Linear(3, 3))
    runner = CliRunner()

    listed = runner.invoke(app, ["list", str(tmp_path), "run"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0
    assert "step-000000001" in listed.output
    assert "loss=0.25" in listed.output
    assert runner.invoke(app, ["verify", str(tmp_path), "run"]).exit_code == 0

    target = second.path / "model.safetensors"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    failed = runner.invoke(app, ["verify", str(tmp_path), "run"])
    assert failed.exit_code == 1
    assert "step-000000001: ok" in failed.output
    assert "step-000000002: FAILED mismatched model.safetensors" in failed.output

    escaped = runner.invoke(app, ["verify", str(tmp_path), "run", "../other"])
    assert escaped.exit_code == 2
