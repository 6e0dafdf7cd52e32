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
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

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

from pose_analyzer.biomechanics.angles import ANGLE_NAMES
from pose_analyzer.detection.base import Detector, DetectorError
from pose_analyzer.detection.options import DetectorOptions, resolve_device
from pose_analyzer.detection.registry import (
    AUTO,
    BACKENDS,
    UnknownBackendError,
    angle_tolerance,
    build_detector,
    create_tracker,
    resolve_backend,
)
from pose_analyzer.engine import PoseEngine, detect_and_analyse, reference_columns
from pose_analyzer.exercises import available_exercises, load_exercise
from pose_analyzer.exercises.definition import Side
from pose_analyzer.exercises.reference import ReferenceMotion, load_reference
from pose_analyzer.render import draw_analysis
from pose_analyzer.report import FileSummary, ReportWriter, mean_score, plot_angle_over_time, summary_table
from pose_analyzer.settings import PoseSettings
from pose_analyzer.smoothing import SmoothingConfig
from pose_analyzer.types import RepRecord
from pose_analyzer.video_io import (
    FrameWriter,
    MediaError,
    MediaInfo,
    MediaKind,
    analysed_size,
    discover,
    iter_frames,
    probe,
)
from service_kit.thirdparty import configure_ultralytics

app = typer.Typer(
    name="pose-analyzer",
    help="Pose analysis of exercise videos and images: keypoints, joint angles, repetitions, form scores.",
    no_args_is_help=True,
    add_completion=False,
)


@dataclass(frozen=True, slots=True)
class AnalyzeOptions:
    backend: str
    exercise: str | None
    output_dir: Path
    overlay: bool
    plot: bool
    max_width: int
    every: int = 1
    reference: ReferenceMotion | None = None
    # Built from PoseSettings, as the service builds them: the same YOLO defaults everywhere.
    detector: DetectorOptions = field(default_factory=DetectorOptions)


class FpsColumn(ProgressColumn):
    """Frames per second of the current file."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-- fps" if speed is None else f"{speed:5.1f} fps", style="cyan")


def _driving_angles(exercise: str | None) -> list[str]:
    """The angle names that drive the exercise's repetitions (plotted); empty without exercise.

    A side-relative driver (``"knee"`` on the ``best`` side) gives both sides' angles.
    """
    if exercise is None:
        return []
    driver = load_exercise(exercise).driver
    if driver.angle in ANGLE_NAMES:
        return [driver.angle]
    if driver.side in (Side.LEFT, Side.RIGHT):
        return [f"{driver.side.value}_{driver.angle}"]
    return [f"left_{driver.angle}", f"right_{driver.angle}"]


def _output_stems(files: list[Path]) -> dict[Path, str]:
    """Output file stems; ``clip.mp4`` and ``clip.jpg`` in one batch become ``clip_mp4``/``clip_jpg``."""
    counts = Counter(f.stem for f in files)
    return {f: f.stem if counts[f.stem] == 1 else f"{f.stem}_{f.suffix.lstrip('.')}" for f in files}


def _build_engine(options: AnalyzeOptions, static: bool) -> tuple[PoseEngine, Detector]:
    """A fresh engine per file: MediaPipe's tracking state and the trackers belong to one stream."""
    tolerance = angle_tolerance(options.backend)
    if static:
        # One image: no temporal tracking in the detector and no temporal smoothing.
        detector = build_detector(options.backend, options.detector.for_still_images())
        detector.setup()
        still = SmoothingConfig(enabled=False)
        engine = PoseEngine(exercise=options.exercise, smoothing=still, angle_tolerance_deg=tolerance)
        return engine, detector
    detector = build_detector(options.backend, options.detector)
    detector.setup()
    tracker = create_tracker(options.backend)
    engine = PoseEngine(tracker, options.exercise, reference=options.reference, angle_tolerance_deg=tolerance)
    return engine, detector


def _reps_by_track(engine: PoseEngine, track_ids: set[int | None]) -> dict[int | None, list[RepRecord]]:
    return {t: engine.reps(t) for t in sorted(t for t in track_ids if t is not None)}


def analyse_file(
    info: MediaInfo, stem: str, options: AnalyzeOptions, progress: Progress | None = None
) -> FileSummary:
    """Analyse one probed file and write its reports; returns its summary.

    Raises:
        MediaError, DetectorError, OSError, cv2.error: the caller reports the file as failed.
    """
    out = options.output_dir
    static = info.kind is MediaKind.IMAGE
    summary = FileSummary(file=str(info.path), kind=info.kind.value)
    expected = -(-info.frame_count // options.every)  # ceil: frames 0, every, 2 * every, ...
    overlay = FrameWriter(
        out / (f"{stem}.overlay.png" if static else f"{stem}.overlay.mp4"),
        None if static else info.fps / options.every,
    )
    task = progress.add_task(escape(info.path.name), total=expected or None) if progress else None
    people_per_frame = 0
    timings: Counter[str] = Counter()
    engine, detector = _build_engine(options, static)
    started = time.perf_counter()
    try:
        with ReportWriter(out, stem) as report, overlay:
            for frame in iter_frames(info, options.max_width, options.every):
                analysis = detect_and_analyse(detector, engine, frame)
                report.add(analysis)
                timings.update(analysis.timings_ms)
                people_per_frame = max(people_per_frame, len(analysis.people))
                if options.overlay:
                    overlay.write(draw_analysis(frame.image, analysis, options.exercise))
                if progress is not None and task is not None:
                    progress.advance(task)
            elapsed = time.perf_counter() - started
            summary.frames = len(report.frames)
            reps = _reps_by_track(engine, report.track_ids)
            rejected = {t: engine.rejected(t) for t in reps}
            metadata = _metadata(info, options, summary.frames, timings, reps)
            metadata["cuts_s"] = [round(t, 4) for t in engine.cuts]
            metadata["reps_by_side"] = {str(t): engine.count_by_side(t) for t in reps}
            report.write_json(metadata, reps, rejected)
    finally:
        detector.close()
        if progress is not None and task is not None:
            progress.remove_task(task)
    summary.outputs += [str(report.keypoints_path), str(report.angles_path), str(report.json_path)]
    if options.overlay:
        summary.outputs.append(str(overlay.path))
    tracks = {t for t in report.track_ids if t is not None}
    summary.people = len(tracks) if tracks else people_per_frame
    summary.reps_by_track = {str(t): len(r) for t, r in reps.items()}
    summary.reps = sum(summary.reps_by_track.values())
    summary.mean_score = mean_score(reps)
    summary.fps = summary.frames / elapsed if elapsed > 0 else 0.0
    if not static and expected and summary.frames < expected - 1:
        summary.warnings.append(
            f"decoded {summary.frames} of {expected} expected frames (truncated or corrupt?)"
        )
    if options.plot and not static:
        _plot(report, reps, options, out / f"{stem}.angles.png", info, summary)
    return summary


def _plot(
    report: ReportWriter,
    reps: dict[int | None, list[RepRecord]],
    options: AnalyzeOptions,
    path: Path,
    info: MediaInfo,
    summary: FileSummary,
) -> None:
    widest = report.history.widest_angle()
    angles = _driving_angles(options.exercise) or ([widest] if widest else [])
    if not angles:
        summary.warnings.append("no angle plot: nobody was seen")
        return
    title = f"{info.path.name}: {', '.join(angles)}" + (f" ({options.exercise})" if options.exercise else "")
    plot_angle_over_time(path, report.history, angles, reps, title=title)
    summary.outputs.append(str(path))


def _metadata(
    info: MediaInfo,
    options: AnalyzeOptions,
    frames: int,
    timings: Counter[str],
    reps: dict[int | None, list[RepRecord]],
) -> dict[str, Any]:
    width, height = analysed_size(info.width, info.height, options.max_width)
    return {
        "source": str(info.path),
        "kind": info.kind.value,
        "exercise": options.exercise,
        "backend": options.backend,
        "source_width": info.width,
        "source_height": info.height,
        "width": width,
        "height": height,
        "fps": round(info.fps, 4),
        "every": options.every,
        "frames": frames,
        "rep_count": sum(len(r) for r in reps.values()),
        "mean_stage_ms": {k: round(v / frames, 3) for k, v in sorted(timings.items())} if frames else {},
    }


def _output_paths(output_dir: Path, stem: str) -> list[Path]:
    suffixes = (
        ".keypoints.csv",
        ".angles.csv",
        ".analysis.json",
        ".overlay.mp4",
        ".overlay.png",
        ".angles.png",
    )
    return [output_dir / f"{stem}{suffix}" for suffix in suffixes]


def run_batch(files: list[Path], options: AnalyzeOptions, console: Console) -> list[FileSummary]:
    """Analyse every file in turn; unreadable ones are reported on ``console`` and skipped."""
    stems = _output_stems(files)
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
                for partial in _output_paths(options.output_dir, stems[path]):
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
