"""`gpu-optimizer train SCRIPT.py -- ARGS`: start a training script under torchrun (elastic).

The command only builds torchrun's command line and runs it: torch.distributed.elastic does the
rendezvous, starts `--nproc-per-node` workers per node and restarts the whole group up to
`--max-restarts` times when a worker dies. Without `--rdzv-endpoint` it runs one node
(`--standalone`); with it, every node runs the same command with the same `--rdzv-id`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer


def torchrun_command(
    script: Path,
    script_args: list[str],
    *,
    nproc_per_node: str,
    nnodes: str,
    max_restarts: int,
    rdzv_endpoint: str | None,
    rdzv_id: str,
) -> list[str]:
    """The `python -m torch.distributed.run ...` command line (torchrun from this interpreter)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc_per_node}"]
    cmd.append(f"--max-restarts={max_restarts}")
    if rdzv_endpoint:
        cmd += [f"--nnodes={nnodes}", "--rdzv-backend=c10d", f"--rdzv-endpoint={rdzv_endpoint}"]
        cmd.append(f"--rdzv-id={rdzv_id}")
    else:
        cmd.append("--standalone")
    return [*cmd, str(script), *script_args]


def train(
    ctx: typer.Context,
    script: Annotated[Path, typer.Argument(help="training script that builds a Trainer and calls fit()")],
    nproc_per_node: Annotated[str, typer.Option(help="workers per node: a number, 'gpu' or 'cpu'")] = "1",
    nnodes: Annotated[str, typer.Option(help="nodes, or MIN:MAX for an elastic range")] = "1",
    max_restarts: Annotated[int, typer.Option(min=0, help="group restarts after a worker dies")] = 3,
    rdzv_endpoint: Annotated[
        str | None, typer.Option(help="HOST:PORT of the rendezvous (multi-node); default: one node")
    ] = None,
    rdzv_id: Annotated[str, typer.Option(help="job id shared by every node of the run")] = "gpu-optimizer",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the torchrun command only")] = False,
) -> None:
    """Run SCRIPT under torchrun; arguments after `--` go to the script."""
    if not script.is_file():
        raise typer.BadParameter(f"no such file: {script}", param_hint="SCRIPT")
    cmd = torchrun_command(
        script,
        list(ctx.args),
        nproc_per_node=nproc_per_node,
        nnodes=nnodes,
        max_restarts=max_restarts,
        rdzv_endpoint=rdzv_endpoint,
        rdzv_id=rdzv_id,
    )
    if dry_run:
        typer.echo(" ".join(cmd))
        return
    raise typer.Exit(subprocess.call(cmd))


TRAIN_CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True}
