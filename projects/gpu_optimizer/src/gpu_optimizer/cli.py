"""Command line: `gpu-optimizer profile|find-batch|models|checkpoints|train`."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gpu_optimizer.checkpoints.cli import app as checkpoints_app
from gpu_optimizer.profiling import runs
from gpu_optimizer.profiling.estimator import EstimationError
from gpu_optimizer.profiling.measure import CudaUnavailableError
from gpu_optimizer.profiling.models import MODELS, ModelSpec, get_model_spec
from gpu_optimizer.profiling.report import MemoryReport
from gpu_optimizer.profiling.runs import GIB
from gpu_optimizer.training.launch import TRAIN_CONTEXT
from gpu_optimizer.training.launch import train as train_command

app = typer.Typer(help="GPU memory profiling, batch-size search and checkpoints.", no_args_is_help=True)
console = Console()


class DType(StrEnum):
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class Device(StrEnum):
    cpu = "cpu"
    cuda = "cuda"
    meta = "meta"


app.add_typer(checkpoints_app, name="checkpoints")
app.command("train", context_settings=TRAIN_CONTEXT)(train_command)


def _spec(name: str) -> ModelSpec:
    try:
        return get_model_spec(name)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="MODEL") from None


def _shape(text: str | None, spec: ModelSpec) -> tuple[int, ...]:
    if not text:
        return spec.input_shape
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise typer.BadParameter(
            f"expected comma-separated integers like 3,224,224, got {text!r}", param_hint="--input"
        ) from None
    if not shape or min(shape) < 1:
        raise typer.BadParameter(f"dimensions must be >= 1, got {text!r}", param_hint="--input")
    return shape


def _gb(n: int) -> str:
    """Bytes in the largest binary unit that keeps the number >= 1."""
    for unit, size in (("GiB", GIB), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(n) >= size:
            return f"{n / size:,.2f} {unit}"
    return f"{n} B"


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code=2)


@app.command()
def models(as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """List the architectures that can be profiled by name."""
    if as_json:
        rows = [
            {
                "name": s.name,
                "family": s.family,
                "description": s.description,
                "input_shape": list(s.input_shape),
            }
            for s in MODELS.values()
        ]
        typer.echo(json.dumps(rows))
        return
    table = Table("name", "family", "default input", "description", title="Known models")
    for s in MODELS.values():
        table.add_row(s.name, s.family, "x".join(map(str, s.input_shape)), s.description)
    console.print(table)


@app.command()
def profile(
    model: Annotated[str, typer.Argument(help="model name (see `gpu-optimizer models`)")],
    input_: Annotated[
        str | None, typer.Option("--input", help="input shape without batch, e.g. 3,224,224")
    ] = None,
    batch: Annotated[int, typer.Option("--batch", min=1)] = 8,
    dtype: Annotated[DType, typer.Option("--dtype")] = DType.float32,
    optimizer: Annotated[str, typer.Option("--optimizer")] = "adamw",
    device: Annotated[
        Device, typer.Option("--device", help="cpu/meta: estimate; cuda: measure")
    ] = Device.meta,
    recommendations: Annotated[bool, typer.Option("--recommend/--no-recommend")] = True,
    snapshot: Annotated[
        Path | None, typer.Option(help="CUDA only: write an allocator snapshot pickle")
    ] = None,
    depth: Annotated[int, typer.Option(min=0, help="module name depth of the breakdown table")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Memory of one training step of MODEL: breakdown, peak and recommendations."""
    spec = _spec(model)
    shape = _shape(input_, spec)
    try:
        report = runs.profile(
            spec,
            shape,
            batch_size=batch,
            dtype=dtype.value,
            optimizer=optimizer,
            device=device.value,
            recommendations=recommendations,
            snapshot=snapshot,
        )
    except (ValueError, EstimationError, CudaUnavailableError) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(report.to_dict()))
        return
    _print_report(report, depth)


def _print_report(report: MemoryReport, depth: int) -> None:
    console.print(
        f"[bold]{report.model}[/bold] {report.method} on {report.device}, {report.dtype}, "
        f"{report.optimizer}, batch {report.batch_size} x {'x'.join(map(str, report.input_shape))}: "
        f"peak [bold]{_gb(report.peak_bytes)}[/bold] during {report.peak_phase}"
        + (f" in {report.peak_module}" if report.peak_module else "")
    )
    kinds = Table("kind", "at peak", "total", title="By kind")
    totals = {
        "parameters": report.parameter_bytes,
        "buffers": report.buffer_bytes,
        "gradients": report.gradient_bytes,
        "optimizer_state": report.optimizer_state_bytes,
        "activations": report.activation_bytes,
    }
    for kind, at_peak in report.peak_breakdown.items():
        kinds.add_row(kind, _gb(at_peak), _gb(totals[kind]) if kind in totals else "")
    console.print(kinds)
    if report.modules:
        table = Table("module", "parameters", "gradients", "optimizer", "activations", title="By module")
        for m in report.modules_by_depth(depth)[:25]:
            table.add_row(
                m.name or "(root)",
                _gb(m.parameters),
                _gb(m.gradients),
                _gb(m.optimizer_state),
                _gb(m.activations),
            )
        console.print(table)
    if report.recommendations:
        recs = Table("recommendation", "predicted peak", "saves", "how", title="Recommendations")
        for r in report.recommendations:
            recs.add_row(r.kind, _gb(r.predicted_peak_bytes), _gb(r.bytes_saved), r.description)
        console.print(recs)
    for note in report.notes:
        console.print(f"note: {note}")


@app.command("find-batch")
def find_batch(
    model: Annotated[str, typer.Argument(help="model name (see `gpu-optimizer models`)")],
    budget_gb: Annotated[
        float | None, typer.Option("--budget-gb", help="memory budget (estimate mode)")
    ] = None,
    input_: Annotated[str | None, typer.Option("--input", help="input shape without batch")] = None,
    dtype: Annotated[DType, typer.Option("--dtype")] = DType.float32,
    optimizer: Annotated[str, typer.Option("--optimizer")] = "adamw",
    device: Annotated[
        Device, typer.Option("--device", help="cpu/meta: estimator; cuda: real steps")
    ] = Device.meta,
    margin: Annotated[float, typer.Option("--margin", min=0.0, max=0.9)] = 0.1,
    limit: Annotated[int, typer.Option("--max", min=1)] = 4096,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Largest batch size of MODEL that fits the budget (or the CUDA device) with a safety margin."""
    spec = _spec(model)
    shape = _shape(input_, spec)
    if device is not Device.cuda and (budget_gb is None or budget_gb <= 0):
        raise _fail("--budget-gb must be given and positive in estimate mode")
    try:
        search = runs.search_batch(
            spec,
            shape,
            budget_bytes=None if budget_gb is None else int(budget_gb * GIB),
            dtype=dtype.value,
            optimizer=optimizer,
            device=device.value,
            margin=margin,
            limit=limit,
        )
    except (ValueError, EstimationError, CudaUnavailableError) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(search.to_dict()))
        return
    console.print(f"largest batch size for [bold]{spec.name}[/bold]: [bold]{search.batch_size}[/bold]")
    table = Table("batch", "fits", "peak", title="Probes")
    for b, ok in search.probes:
        table.add_row(
            str(b), "yes" if ok else "no", _gb(search.peak_bytes[b]) if b in search.peak_bytes else ""
        )
    console.print(table)
