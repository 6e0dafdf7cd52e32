"""`gpu-optimizer train`: the torchrun command line it builds, and its errors."""

from __future__ import annotations

import sys
from pathlib import Path

from typer.testing import CliRunner

from gpu_optimizer.cli import app

runner = CliRunner()


def test_one_node_runs_standalone_and_passes_script_args(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text("print('hi')\n")
    args = ["train", str(script), "--nproc-per-node", "2", "--max-restarts", "5", "--dry-run", "--"]
    result = runner.invoke(app, [*args, "--lr", "0.1", "--steps", "3"])
    assert result.exit_code == 0, result.output
    cmd = result.output.split()
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert {"--nproc-per-node=2", "--max-restarts=5", "--standalone"} <= set(cmd)
    assert cmd[-5:] == [str(script), "--lr", "0.1", "--steps", "3"]


def test_several_nodes_use_the_rendezvous_endpoint(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text("print('hi')\n")
    args = ["train", str(script), "--nnodes", "2:4", "--rdzv-endpoint", "host0:29400", "--rdzv-id", "run-7"]
    result = runner.invoke(app, [*args, "--dry-run"])
    assert result.exit_code == 0, result.output
    cmd = result.output.split()
    assert "--standalone" not in cmd
    assert {"--nnodes=2:4", "--rdzv-backend=c10d", "--rdzv-endpoint=host0:29400", "--rdzv-id=run-7"} <= set(
        cmd
    )


def test_missing_script_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", str(tmp_path / "nope.py")])
    assert result.exit_code == 2
    assert "no such file" in result.output
