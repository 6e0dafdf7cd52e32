"""``gpu-optimizer checkpoints``: list and verify the checkpoints of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gpu_optimizer.checkpoints.errors import CheckpointError
from gpu_optimizer.checkpoints.manager import CheckpointManager

app = typer.Typer(help="Inspect and verify training checkpoints.", no_args_is_help=True)
RootArg = Annotated[Path, typer.Argument(help="Checkpoint root directory.", exists=True, file_okay=False)]
RunArg = Annotated[str, typer.Argument(help="Run name (a directory under the root).")]


def _manager(root: Path, run: str) -> CheckpointManager:
    try:
        return CheckpointManager(root, run, keep_last=None)
    except CheckpointError as exc:
        raise typer.BadParameter(str(exc)) from exc


@app.command("list")
def list_checkpoints(root: RootArg, run: RunArg) -> None:
    """List the checkpoints of a run that have a manifest, oldest first."""
    table = Table("name", "kind", "step", "epoch", "metrics", "size (MiB)", "created")
    for info in _manager(root, run).list():
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(info.metrics.items()))
        table.add_row(
            info.name,
            info.kind,
            str(info.step),
            str(info.epoch),
            metrics,
            f"{info.size_bytes / 2**20:.1f}",
            info.created_at,
        )
    Console().print(table)


@app.command("verify")
def verify(
    root: RootArg,
    run: RunArg,
    name: Annotated[str | None, typer.Argument(help="One checkpoint; all when omitted.")] = None,
) -> None:
    """Check every file against the hash (BLAKE3, or SHA-256 for format 1) in its manifest; exit 1 if any
    checkpoint fails."""
    manager = _manager(root, run)
    try:
        names = [name] if name else [i.name for i in manager.list()]
        results = [manager.verify(n) for n in names]
    except CheckpointError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    for r in results:
        detail = r.error or ", ".join(
            [*(f"mismatched {f}" for f in r.mismatched), *(f"missing {f}" for f in r.missing)]
        )
        typer.echo(f"{r.name}: {'ok' if r.ok else 'FAILED ' + detail}")
    if not all(r.ok for r in results):
        raise typer.Exit(1)
