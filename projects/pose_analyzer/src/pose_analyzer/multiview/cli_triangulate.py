"""``pose-analyzer triangulate CAM1.mp4 CAM2.mp4 ... --rig calib.toml``: 3D from synchronised videos.

Writes into ``--output``: ``<name>.trc`` (OpenSim markers, Y-up, metres, Butterworth
filtered unless ``--filter-hz 0``), ``<name>.csv`` (raw 3D points, reprojection error and
angles per frame), ``<name>.reprojection.png``, ``<name>.summary.json`` and, with
``--overlays``, ``overlays/<camera>.overlay.mp4``.  With a multi-person backend
(``--backend yolo``) the people are associated across cameras and each person id gets its own
files, ``<name>.person<id>.*``, and the JSON summary is ``{"people": {"<id>": summary}}``
(no overlays).  Exit codes: 0 done, 1 nothing could be triangulated, 2 bad options
(unreadable rig or video, unknown camera or backend).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from pose_analyzer.detection.options import DetectorOptions, resolve_device
from pose_analyzer.detection.registry import UnknownBackendError, build_detector, multi_person
from pose_analyzer.multiview.calibration_io import read_rig
from pose_analyzer.multiview.offline import (
    CameraVideo,
    MultiviewSeries,
    match_videos,
    run_multiview,
    summarise,
    write_outputs,
)
from pose_analyzer.multiview.offline_people import run_multiview_people
from pose_analyzer.multiview.rig import RigError
from pose_analyzer.multiview.triangulation import DEFAULT_MIN_CONFIDENCE, DEFAULT_OUTLIER_PX
from pose_analyzer.settings import PoseSettings
from pose_analyzer.video_io import MediaError
from service_kit.thirdparty import configure_ultralytics


def _fmt(value: object, unit: str = "", digits: int = 2) -> str:
    return f"{value:.{digits}f}{unit}" if isinstance(value, float) else "-"


def _table(summary: dict[str, Any]) -> Table:
    table = Table(title="3D triangulation")
    table.add_column("figure")
    variants = list(summary["bone_length_cv"])
    for name in variants:
        table.add_column(name, justify="right")
    reproj = summary["reprojection_px"]
    table.add_row("frames", str(summary["frames"]))
    table.add_row("reprojection mean / p95", f"{_fmt(reproj['mean'], ' px')} / {_fmt(reproj['p95'], ' px')}")
    for bone in summary["bone_length_cv"]["raw"]:
        cells = [summary["bone_length_cv"][v][bone] for v in variants]
        table.add_row(
            f"length CV {bone}", *(_fmt(100 * c if isinstance(c, float) else None, " %", 1) for c in cells)
        )
    for angle in summary["max_angle_jump_deg"]["raw"]:
        cells = [summary["max_angle_jump_deg"][v][angle] for v in variants]
        table.add_row(f"max jump {angle}", *(_fmt(c, " deg", 1) for c in cells))
    return table


def triangulate(
    videos: Annotated[
        list[Path], typer.Argument(exists=True, dir_okay=False, help="Synchronised videos, one per camera.")
    ],
    rig: Annotated[
        Path,
        typer.Option(exists=True, dir_okay=False, help="Calibration: .qca.txt, .toml, .yml/.yaml or .json."),
    ],
    cameras: Annotated[
        str | None,
        typer.Option(
            help="Rig camera of each video, comma-separated (default: by file name, else rig order)."
        ),
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the results.")] = Path(
        "pose_output"
    ),
    name: Annotated[str, typer.Option(help="Stem of the output files.")] = "triangulation",
    max_width: Annotated[
        int, typer.Option(min=16, help="Frames are downscaled to this width for detection.")
    ] = 720,
    filter_hz: Annotated[
        float, typer.Option(min=0.0, help="Butterworth cutoff for the TRC (0: unfiltered).")
    ] = 6.0,
    min_confidence: Annotated[float, typer.Option(min=0.0, max=1.0)] = DEFAULT_MIN_CONFIDENCE,
    outlier_px: Annotated[
        float, typer.Option(min=0.0, help="Reprojection error that marks a camera an outlier.")
    ] = DEFAULT_OUTLIER_PX,
    frames: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many frames.", show_default=False)
    ] = None,
    overlays: Annotated[bool, typer.Option("--overlays", help="Write per-camera overlay videos.")] = False,
    json_summary: Annotated[
        bool, typer.Option("--json-summary", help="Print the summary as one JSON object.")
    ] = False,
    backend: Annotated[
        str, typer.Option(help="Pose backend: mediapipe (one person) or yolo (every person, associated).")
    ] = "mediapipe",
    bone_prior: Annotated[
        bool,
        typer.Option(
            help="Refine the limbs with the segment lengths learnt over the clip, as live sessions do "
            "(single-person backends)."
        ),
    ] = True,
) -> None:
    """Triangulate people in 3D from synchronised videos of a calibrated rig."""
    console = Console(stderr=True)
    try:
        several = multi_person(backend)
        camera_rig = read_rig(rig)
        names = [c.strip() for c in cameras.split(",")] if cameras else None
        paired = match_videos(videos, camera_rig, names)
    except UnknownBackendError as exc:
        raise typer.BadParameter(exc.message, param_hint="--backend") from None
    except (RigError, MediaError) as exc:
        raise typer.BadParameter(str(exc)) from None
    for video in paired:
        if video.note:
            console.print(f"[yellow]{escape(video.camera.name)}: {escape(video.note)}[/yellow]")
    total = min(v.info.frame_count for v in paired) or None
    if frames is not None:
        total = min(total or frames, frames)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    if several:
        if overlays:
            console.print("[yellow]overlays are drawn for single-person backends only[/yellow]")
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task(f"{len(paired)} cameras", total=total)
            people = _run_people(
                paired, backend, max_width, min_confidence, outlier_px, frames, progress, task
            )
        _write_people(people, output, name, filter_hz or None, console, json_summary)
        return
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"{len(paired)} cameras", total=total)
        series = run_multiview(
            paired,
            max_width=max_width,
            min_confidence=min_confidence,
            outlier_px=outlier_px,
            overlay_dir=output / "overlays" if overlays else None,
            on_group=lambda _: progress.advance(task),
            max_groups=frames,
            bone_prior=bone_prior,
        )
    filter_at = filter_hz or None
    written = write_outputs(series, output, name, filter_at)
    summary = summarise(series, filter_at)
    summary_path = output / f"{name}.summary.json"
    summary_path.write_text(json.dumps(summary, indent=2, allow_nan=False, default=str), encoding="utf-8")
    console.print(_table(summary))
    for path in [*written, summary_path]:
        console.print(f"wrote {escape(str(path))}")
    if json_summary:
        typer.echo(json.dumps(summary))
    if summary["reprojection_px"]["mean"] is None:
        raise typer.Exit(code=1)


def _run_people(
    paired: list[CameraVideo],
    backend: str,
    max_width: int,
    min_confidence: float,
    outlier_px: float,
    frames: int | None,
    progress: Progress,
    task: TaskID,
) -> dict[int, MultiviewSeries]:
    settings = PoseSettings()
    configure_ultralytics(settings.cache_dir)
    detector = build_detector(
        backend, DetectorOptions.from_settings(settings, resolve_device(settings.device))
    )
    detector.setup()
    try:
        return run_multiview_people(
            paired,
            detector,
            max_width=max_width,
            min_confidence=min_confidence,
            outlier_px=outlier_px,
            on_group=lambda _: progress.advance(task),
            max_groups=frames,
        )
    finally:
        detector.close()


def _write_people(
    people: dict[int, MultiviewSeries],
    output: Path,
    name: str,
    filter_at: float | None,
    console: Console,
    json_summary: bool,
) -> None:
    """Each person's files and summary; exit 1 when nobody was triangulated."""
    summaries: dict[str, Any] = {}
    for person_id, series in people.items():
        stem = f"{name}.person{person_id}"
        written = write_outputs(series, output, stem, filter_at)
        summary = summarise(series, filter_at)
        summary_path = output / f"{stem}.summary.json"
        summary_path.write_text(json.dumps(summary, indent=2, allow_nan=False, default=str), encoding="utf-8")
        table = _table(summary)
        table.title = f"3D triangulation, person {person_id}"
        console.print(table)
        for path in [*written, summary_path]:
            console.print(f"wrote {escape(str(path))}")
        summaries[str(person_id)] = summary
    if json_summary:
        typer.echo(json.dumps({"people": summaries}))
    if not summaries:
        console.print("[red]nobody was seen by two cameras[/red]")
        raise typer.Exit(code=1)
