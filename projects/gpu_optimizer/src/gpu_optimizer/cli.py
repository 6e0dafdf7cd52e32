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
from gpu_optimizer.profiling.setup import DTYPE_PRECISIONS, TrainingSetup
from gpu_optimizer.profiling.verdict import Priced, Verdict
from gpu_optimizer.training.launch import TRAIN_CONTEXT
from gpu_optimizer.training.launch import train as train_command

app = typer.Typer(help="GPU memory profiling, batch-size search and checkpoints.", no_args_is_help=True)
console = Console()


class DType(StrEnum):
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class Precision(StrEnum):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"
    amp_bf16 = "amp-bf16"
    amp_fp16 = "amp-fp16"


class ShardingOption(StrEnum):
    none = "none"
    ddp = "ddp"
    zero1 = "zero1"
    zero2 = "zero2"
    zero3 = "zero3"
    fsdp = "fsdp"


class OptimizerImplOption(StrEnum):
    single = "single"
    foreach = "foreach"
    fused = "fused"


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
    gpu: Annotated[
        str | None,
        typer.Option(
            "--gpu", help="target GPU: a name (rtx-4090, h100-80gb, ...) or memory in GB; gives a verdict"
        ),
    ] = None,
    gpus: Annotated[
        int, typer.Option("--gpus", min=1, help="GPUs at hand (sharding options tried above 1)")
    ] = 1,
    precision: Annotated[
        Precision | None, typer.Option("--precision", help="overrides --dtype; amp-*: fp32 master weights")
    ] = None,
    keep_output: Annotated[
        bool, typer.Option("--keep-output", help="the output lives until the step ends")
    ] = False,
    accumulate: Annotated[int, typer.Option("--accumulate", min=1, help="gradient accumulation steps")] = 1,
    checkpoint: Annotated[
        str | None, typer.Option("--checkpoint", help="comma-separated module names to checkpoint")
    ] = None,
    sharding: Annotated[ShardingOption, typer.Option("--sharding")] = ShardingOption.none,
    world_size: Annotated[int, typer.Option("--world-size", min=1, help="ranks for --sharding")] = 1,
    offload_optimizer: Annotated[bool, typer.Option("--offload-optimizer")] = False,
    optimizer_impl: Annotated[
        OptimizerImplOption | None, typer.Option("--optimizer-impl", help="default: foreach on a GPU")
    ] = None,
) -> None:
    """Memory of one training step of MODEL: breakdown, peak and recommendations; with --gpu a verdict."""
    spec = _spec(model)
    shape = _shape(input_, spec)
    try:
        setup = TrainingSetup(
            precision=(precision.value if precision else DTYPE_PRECISIONS[dtype.value]),
            keep_output=keep_output,
            accumulation_steps=accumulate,
            checkpoint_blocks=tuple(n for n in (checkpoint or "").split(",") if n),
            sharding=sharding.value,
            world_size=world_size,
            offload_optimizer=offload_optimizer,
            optimizer_impl=optimizer_impl.value if optimizer_impl else None,
        )
        plain = setup == TrainingSetup(setup.precision) and gpu is None
        report = runs.profile(
            spec,
            shape,
            batch_size=batch,
            dtype=dtype.value,
            optimizer=optimizer,
            device=device.value,
            recommendations=recommendations,
            snapshot=snapshot,
            setup=None if plain else setup,
            gpu=gpu,
        )
        found = None
        if gpu is not None:
            found = runs.verdict(
                spec, gpu, shape, batch_size=batch, setup=setup, optimizer=optimizer, gpus=gpus
            )
    except (ValueError, EstimationError, CudaUnavailableError) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        data = report.to_dict()
        if found is not None:
            data["verdict"] = found.to_dict()
        typer.echo(json.dumps(data))
        return
    _print_report(report, depth)
    if found is not None:
        _print_verdict(found)


def _print_verdict(v: Verdict) -> None:
    target = v.target["name"]
    answer = "[green]fits[/green]" if v.fits else "[red]does not fit[/red]"
    console.print(f"[bold]Verdict on {target}[/bold]: batch {v.requested.batch_size} {answer}")
    table = Table(
        "", "setup", "batch", "micro-batch", "allocated", "reserved", "on the GPU", "fits", title="Verdict"
    )
    rows: list[tuple[str, Priced]] = [("as given", v.requested)]
    if v.largest is not None:
        rows.append(("largest batch", v.largest))
    if v.cheapest is not None and not v.fits:
        rows.append(("cheapest fix", v.cheapest))
    for what, p in rows:
        table.add_row(
            what,
            p.label,
            str(p.batch_size),
            str(p.micro_batch_size),
            _gb(p.allocated_bytes),
            _gb(p.reserved_bytes),
            _gb(p.device_bytes),
            "yes" if p.fits else "no",
        )
    console.print(table)
    if v.largest is None:
        console.print("no batch size fits with this setup")
    if not v.fits and v.cheapest is None:
        console.print(f"none of the {len(v.tried)} option combinations tried fits")
    for line in v.assumptions:
        console.print(f"assumes: {line}")


def _print_report(report: MemoryReport, depth: int) -> None:
    console.print(
        f"[bold]{report.model}[/bold] {report.method} on {report.device}, {report.dtype}, "
        f"{report.optimizer}, batch {report.batch_size} x {'x'.join(map(str, report.input_shape))}: "
        f"peak [bold]{_gb(report.peak_bytes)}[/bold] during {report.peak_phase}"
        + (f" in {report.peak_module}" if report.peak_module else "")
        + (f" (per rank of {report.world_size}, {report.sharding})" if report.world_size > 1 else "")
    )
    if report.device == "cuda" and report.reserved_peak_bytes is not None:
        console.print(
            f"CUDA caching allocator: allocated peak {_gb(report.allocated_peak_bytes or 0)}, "
            f"reserved peak {_gb(report.reserved_peak_bytes)}"
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
