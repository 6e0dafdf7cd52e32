"""Analysis of one video or image file into its reports (CSV, JSON, overlay, angle plot).

What ``pose-analyzer analyze`` runs per file; the CLI adds the batch, progress and console output.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.progress import Progress

from pose_analyzer.biomechanics.angles import ANGLE_NAMES
from pose_analyzer.detection.base import Detector
from pose_analyzer.detection.options import DetectorOptions
from pose_analyzer.detection.registry import angle_tolerance, build_detector, create_tracker
from pose_analyzer.engine import PoseEngine, detect_and_analyse
from pose_analyzer.exercises import load_exercise
from pose_analyzer.exercises.definition import Side
from pose_analyzer.exercises.reference import ReferenceMotion
from pose_analyzer.render import draw_analysis
from pose_analyzer.report import FileSummary, ReportWriter, mean_score, plot_angle_over_time
from pose_analyzer.smoothing import SmoothingConfig
from pose_analyzer.types import RepRecord
from pose_analyzer.video_io import FrameWriter, MediaInfo, MediaKind, analysed_size, iter_frames


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


def driving_angles(exercise: str | None) -> list[str]:
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


def output_stems(files: list[Path]) -> dict[Path, str]:
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
    angles = driving_angles(options.exercise) or ([widest] if widest else [])
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


def output_paths(output_dir: Path, stem: str) -> list[Path]:
    suffixes = (
        ".keypoints.csv",
        ".angles.csv",
        ".analysis.json",
        ".overlay.mp4",
        ".overlay.png",
        ".angles.png",
    )
    return [output_dir / f"{stem}{suffix}" for suffix in suffixes]
