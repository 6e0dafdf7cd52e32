"""``pose-analyzer``: analyse exercise videos, images or whole folders from the command line.

``pose-analyzer analyze PATH`` writes, per file, into ``--output``:
``<stem>.keypoints.csv``, ``<stem>.angles.csv``, ``<stem>.analysis.json``, and for a
video ``<stem>.overlay.mp4`` and ``<stem>.angles.png`` (for an image ``<stem>.overlay.png``),
then prints a summary table (or, with ``--json-summary``, one JSON object on stdout).

Files that cannot be read are reported with the reason and skipped; the batch goes on.
Exit codes: 0 when at least one file was analysed (some may have been skipped),
1 when no file could be analysed (all skipped, or the folder holds none),
2 for invalid options (unknown exercise or backend, missing path).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import cv2
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from pose_analyzer.detection.base import DetectorError
from pose_analyzer.detection.options import DetectorOptions, resolve_device
from pose_analyzer.detection.registry import (
    AUTO,
    BACKENDS,
    UnknownBackendError,
    resolve_backend,
)
from pose_analyzer.engine import reference_columns
from pose_analyzer.exercises import available_exercises, load_exercise
from pose_analyzer.exercises.reference import ReferenceMotion, load_reference
from pose_analyzer.file_analysis import AnalyzeOptions, analyse_file, output_paths, output_stems
from pose_analyzer.multiview.cli_triangulate import triangulate
from pose_analyzer.report import FileSummary, summary_table
from pose_analyzer.settings import PoseSettings
from pose_analyzer.stream_cli import stream
from pose_analyzer.video_io import (
    MediaError,
    discover,
    probe,
)
from service_kit.thirdparty import configure_ultralytics

app = typer.Typer(
    name="pose-analyzer",
    help="Pose analysis of exercise videos and images: keypoints, joint angles, repetitions, form scores.",
    no_args_is_help=True,
    add_completion=False,
)
app.command()(triangulate)
app.command()(stream)  # the camera client (stream_cli.py)


class FpsColumn(ProgressColumn):
    """Frames per second of the current file."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-- fps" if speed is None else f"{speed:5.1f} fps", style="cyan")


def run_batch(files: list[Path], options: AnalyzeOptions, console: Console) -> list[FileSummary]:
    """Analyse every file in turn; unreadable ones are reported on ``console`` and skipped."""
    stems = output_stems(files)
    summaries: list[FileSummary] = []
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        FpsColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        for path in files:
            try:
                info = probe(path)
                summary = analyse_file(info, stems[path], options, progress)
            except (MediaError, DetectorError, OSError, cv2.error) as exc:
                reason = exc.reason if isinstance(exc, MediaError) else f"{type(exc).__name__}: {exc}"
                console.print(f"[red]skipped[/red] {escape(str(path))}: {escape(reason)}")
                # Half-written reports would look valid: remove them.
                for partial in output_paths(options.output_dir, stems[path]):
                    partial.unlink(missing_ok=True)
                summaries.append(FileSummary(file=str(path), error=reason))
                continue
            for warning in summary.warnings:
                console.print(f"[yellow]warning[/yellow] {escape(str(path))}: {escape(warning)}")
            summaries.append(summary)
    return summaries


def _check_reference(path: Path | None, exercise: str | None) -> ReferenceMotion | None:
    if path is None:
        return None
    if exercise is None:
        raise typer.BadParameter("a reference rep needs --exercise (reps are what it scores)")
    try:
        reference = load_reference(path)
        reference_columns(reference)
    except (ValueError, OSError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--reference") from None
    return reference


def _check_exercise(exercise: str | None) -> str | None:
    if exercise is None:
        return None
    names = sorted(available_exercises())
    if exercise not in names:
        raise typer.BadParameter(f"unknown exercise {exercise!r}; available: {', '.join(names)}")
    return exercise


@app.command()
def analyze(
    path: Annotated[
        Path, typer.Argument(exists=True, readable=True, help="A video, an image, or a folder of them.")
    ],
    exercise: Annotated[
        str | None,
        typer.Option(help="Exercise to count and score (see `pose-analyzer exercises`).", show_default=False),
    ] = None,
    backend: Annotated[
        str,
        typer.Option(
            help=f"Pose backend: {', '.join((AUTO, *BACKENDS))}; auto picks what this machine runs best."
        ),
    ] = AUTO,
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the reports.")] = Path(
        "pose_output"
    ),
    no_overlay: Annotated[
        bool, typer.Option("--no-overlay", help="Do not write overlay videos/images.")
    ] = False,
    no_plot: Annotated[bool, typer.Option("--no-plot", help="Do not write angle-over-time plots.")] = False,
    max_width: Annotated[
        int, typer.Option(min=16, help="Frames wider than this are downscaled before analysis.")
    ] = 1280,
    every: Annotated[
        int, typer.Option(min=1, help="Analyse every Nth frame of a video (faster on long clips).")
    ] = 1,
    reference: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            readable=True,
            help="A coach's reference rep (.json or .npz): every rep is scored against it by DTW.",
            show_default=False,
        ),
    ] = None,
    json_summary: Annotated[
        bool, typer.Option("--json-summary", help="Print one JSON object with per-file results on stdout.")
    ] = False,
) -> None:
    """Analyse a video, an image or every video and image in a folder."""
    # Progress, warnings and (with --json-summary) the table go to stderr: stdout stays parseable.
    console = Console(stderr=True)
    exercise = _check_exercise(exercise)
    reference_motion = _check_reference(reference, exercise)
    settings = PoseSettings()
    configure_ultralytics(settings.cache_dir)
    device = resolve_device(settings.device)
    try:
        backend_name, why = resolve_backend(backend, cuda_available=device == "cuda")
    except UnknownBackendError as exc:
        raise typer.BadParameter(exc.message, param_hint="--backend") from None
    if backend.strip().lower() == AUTO:
        console.print(f"backend: [bold]{backend_name}[/bold] ({escape(why)})")
    files = discover(path)
    if not files:
        console.print(f"[red]no files in {escape(str(path))}[/red]")
        raise typer.Exit(code=1)
    output.mkdir(parents=True, exist_ok=True)
    options = AnalyzeOptions(
        backend_name,
        exercise,
        output,
        not no_overlay,
        not no_plot,
        max_width,
        every,
        reference_motion,
        DetectorOptions.from_settings(settings, device),
    )
    summaries = run_batch(files, options, console)
    table = summary_table(summaries)
    if json_summary:
        console.print(table)
        payload = {
            "backend": backend_name,
            "exercise": exercise,
            "output": str(output),
            "analysed": sum(s.ok for s in summaries),
            "failed": sum(not s.ok for s in summaries),
            "files": [s.to_dict() for s in summaries],
        }
        typer.echo(json.dumps(payload))
    else:
        Console().print(table)
    if not any(s.ok for s in summaries):
        raise typer.Exit(code=1)


@app.command()
def exercises() -> None:
    """List the exercises that can be counted and scored: name, then what it is."""
    for name in available_exercises():
        definition = load_exercise(name)
        typer.echo(f"{name:<14} {definition.display_name}: {definition.description}")
