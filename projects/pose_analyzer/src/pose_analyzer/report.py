"""Reports of one analysed file: per-frame CSVs, the analysis JSON and an angle plot.

``ReportWriter`` streams the two CSV files while frames arrive and keeps what the JSON
and the plot need; ``finish`` writes those once the repetitions are known.  Coordinates
are pixels of the analysed frame (see ``keypoints.py``); missing values are empty CSV
cells and JSON ``null`` (never ``NaN``, which is not JSON).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, TextIO

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from rich.markup import escape
from rich.table import Table

from pose_analyzer.keypoints import KEYPOINT_NAMES
from pose_analyzer.output import FrameOut, RejectedOut, RepOut
from pose_analyzer.types import FrameAnalysis, RejectedRep, RepRecord

KEYPOINT_COLUMNS: tuple[str, ...] = ("frame", "time", "track_id", "keypoint", "x", "y", "conf")
ANGLE_COLUMNS: tuple[str, ...] = ("frame", "time", "track_id", "angle", "degrees")
PLOT_SIZE_PX: tuple[int, int] = (1200, 500)
_PLOT_DPI = 100
_LINE_STYLES = ("-", "--", ":", "-.")

# (time s, degrees) samples of one angle of one track.
AngleSeries = list[tuple[float, float]]


def _cell(value: float, digits: int) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else ""


def _track_cell(track_id: int | None) -> str:
    return "" if track_id is None else str(track_id)


def keypoint_rows(analysis: FrameAnalysis) -> list[list[str]]:
    """One CSV row per person and keypoint, in ``KEYPOINT_COLUMNS`` order."""
    rows: list[list[str]] = []
    time = f"{analysis.timestamp:.4f}"
    for person in analysis.people:
        track = _track_cell(person.person.track_id)
        for name, (x, y, conf) in zip(KEYPOINT_NAMES, person.person.keypoints.tolist(), strict=True):
            rows.append([str(analysis.index), time, track, name, _cell(x, 2), _cell(y, 2), _cell(conf, 3)])
    return rows


def angle_rows(analysis: FrameAnalysis) -> list[list[str]]:
    """One CSV row per person and angle, in ``ANGLE_COLUMNS`` order."""
    time = f"{analysis.timestamp:.4f}"
    return [
        [str(analysis.index), time, _track_cell(person.person.track_id), name, _cell(degrees, 2)]
        for person in analysis.people
        for name, degrees in person.angles.items()
    ]


@dataclass
class AngleHistory:
    """Every angle of every track over time, as the plot needs it."""

    series: dict[int | None, dict[str, AngleSeries]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )

    def add(self, analysis: FrameAnalysis) -> None:
        for person in analysis.people:
            by_angle = self.series[person.person.track_id]
            for name, degrees in person.angles.items():
                if math.isfinite(degrees):
                    by_angle[name].append((analysis.timestamp, degrees))

    def widest_angle(self) -> str | None:
        """The angle name with the largest range over all tracks: the one that moves most."""
        best: tuple[float, str] | None = None
        for by_angle in self.series.values():
            for name, samples in by_angle.items():
                values = [v for _, v in samples]
                spread = max(values) - min(values) if values else 0.0
                if best is None or spread > best[0]:
                    best = (spread, name)
        return None if best is None else best[1]


def plot_angle_over_time(
    path: Path | BinaryIO,
    history: AngleHistory,
    angles: Sequence[str],
    reps: dict[int | None, list[RepRecord]],
    title: str = "",
    size_px: tuple[int, int] = PLOT_SIZE_PX,
) -> None:
    """Write a PNG of ``angles`` over time: a colour per track, a line style per angle,
    each repetition shaded in its track's colour and labelled ``index: score``.

    Uses matplotlib's object API on an Agg canvas (no pyplot global state), so it is
    safe to call from any thread.

    Raises:
        ValueError: ``angles`` is empty.
    """
    if not angles:
        raise ValueError("at least one angle name is needed")
    figure = Figure(figsize=(size_px[0] / _PLOT_DPI, size_px[1] / _PLOT_DPI), dpi=_PLOT_DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    tracks = sorted(history.series, key=lambda t: (t is None, t or 0))
    for number, track_id in enumerate(tracks):
        color = f"C{number % 10}"
        track_label = f"track {track_id}" if track_id is not None else "untracked"
        for angle, style in zip(angles, _LINE_STYLES, strict=False):
            samples = history.series[track_id].get(angle, [])
            if samples:
                times, values = np.array(samples).T
                label = f"{track_label} {angle}" if len(angles) > 1 else track_label
                axes.plot(times, values, style, color=color, label=label, linewidth=1.5)
        for rep in reps.get(track_id, []):
            axes.axvspan(rep.start_time, rep.end_time, color=color, alpha=0.15)
            axes.annotate(
                f"{rep.index}: " + ("-" if math.isnan(rep.score) else f"{rep.score:.0f}"),
                ((rep.start_time + rep.end_time) / 2, 1.0),
                xycoords=("data", "axes fraction"),
                ha="center",
                va="top",
                fontsize=8,
            )
    names = ", ".join(angles)
    axes.set_xlabel("time (s)")
    axes.set_ylabel("degrees")
    axes.set_title(title or f"{names} over time (shaded: repetitions, label: rep index: score)")
    axes.grid(True, alpha=0.3)
    if axes.lines:
        axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    # No bbox_inches="tight": the PNG keeps exactly the requested pixel size.
    figure.savefig(path, dpi=_PLOT_DPI, format="png")


def angle_plot_png(
    history: AngleHistory,
    angles: Sequence[str],
    reps: dict[int | None, list[RepRecord]],
    title: str = "",
    size_px: tuple[int, int] = PLOT_SIZE_PX,
) -> bytes:
    """The PNG of :func:`plot_angle_over_time`, as bytes (for HTTP answers).

    Raises:
        ValueError: ``angles`` is empty.
    """
    buffer = io.BytesIO()
    plot_angle_over_time(buffer, history, angles, reps, title, size_px)
    return buffer.getvalue()


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write strict JSON (``NaN`` refused: callers convert missing values to ``None``)."""
    with path.open("w", encoding="utf-8") as fh:
        json.dump(data, fh, allow_nan=False, separators=(",", ":"))


class ReportWriter:
    """Streams ``<stem>.keypoints.csv`` and ``<stem>.angles.csv`` and gathers the JSON frames.

    Use as a context manager; ``add`` each ``FrameAnalysis``; ``write_json`` at the end.
    """

    def __init__(self, output_dir: Path, stem: str) -> None:
        self.keypoints_path = output_dir / f"{stem}.keypoints.csv"
        self.angles_path = output_dir / f"{stem}.angles.csv"
        self.json_path = output_dir / f"{stem}.analysis.json"
        self.history = AngleHistory()
        self.frames: list[dict[str, Any]] = []
        self.track_ids: set[int | None] = set()
        self._files: list[TextIO] = []
        self._keypoints = self._open_csv(self.keypoints_path, KEYPOINT_COLUMNS)
        self._angles = self._open_csv(self.angles_path, ANGLE_COLUMNS)

    def _open_csv(self, path: Path, columns: tuple[str, ...]) -> Any:
        fh = path.open("w", encoding="utf-8", newline="")
        self._files.append(fh)
        writer = csv.writer(fh)
        writer.writerow(columns)
        return writer

    def add(self, analysis: FrameAnalysis) -> None:
        self._keypoints.writerows(keypoint_rows(analysis))
        self._angles.writerows(angle_rows(analysis))
        self.frames.append(FrameOut.of(analysis).model_dump())
        self.history.add(analysis)
        self.track_ids.update(p.person.track_id for p in analysis.people)

    def write_json(
        self,
        metadata: dict[str, Any],
        reps: dict[int | None, list[RepRecord]],
        rejected: dict[int | None, list[RejectedRep]] | None = None,
    ) -> None:
        """Write ``<stem>.analysis.json``: ``metadata``, reps per track, every rejected candidate
        rep per track (with its reason), and every frame."""
        data = dict(metadata)
        data["reps"] = [
            {"track_id": track_id, **RepOut.of(rep).model_dump()}
            for track_id, track_reps in reps.items()
            for rep in track_reps
        ]
        data["rejected"] = [
            {"track_id": track_id, **RejectedOut.of(item).model_dump()}
            for track_id, items in (rejected or {}).items()
            for item in items
        ]
        data["frames"] = self.frames
        write_json(self.json_path, data)

    def close(self) -> None:
        for fh in self._files:
            fh.close()
        self._files.clear()

    def __enter__(self) -> ReportWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@dataclass(slots=True)
class FileSummary:
    """The outcome of one file of a batch: counts when analysed, the reason when skipped."""

    file: str
    kind: str = ""
    frames: int = 0
    people: int = 0
    reps: int = 0
    reps_by_track: dict[str, int] = field(default_factory=dict)
    mean_score: float | None = None
    fps: float = 0.0
    outputs: list[str] = field(default_factory=list)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "ok": self.ok,
            "kind": self.kind,
            "frames": self.frames,
            "people": self.people,
            "reps": self.reps,
            "reps_by_track": self.reps_by_track,
            "mean_score": None if self.mean_score is None else round(self.mean_score, 2),
            "fps": round(self.fps, 2),
            "outputs": self.outputs,
            "error": self.error,
            "warnings": self.warnings,
        }


def mean_score(reps: dict[int | None, list[RepRecord]]) -> float | None:
    """Mean form score over every repetition of every track, None without repetitions."""
    scores = [rep.score for track_reps in reps.values() for rep in track_reps if math.isfinite(rep.score)]
    return sum(scores) / len(scores) if scores else None


def summary_table(summaries: list[FileSummary]) -> Table:
    """A rich table with one row per file: frames, people, reps, mean score, fps or the error."""
    table = Table(title="pose analysis")
    table.add_column("file", overflow="fold")
    for column in ("frames", "people", "reps", "mean score", "fps"):
        table.add_column(column, justify="right")
    table.add_column("status")
    for s in summaries:
        if s.ok:
            score = "-" if s.mean_score is None else f"{s.mean_score:.1f}"
            status = "[green]ok[/green]" + "".join(f"\n[yellow]{escape(w)}[/yellow]" for w in s.warnings)
            table.add_row(
                escape(Path(s.file).name),
                str(s.frames),
                str(s.people),
                str(s.reps),
                score,
                f"{s.fps:.1f}",
                status,
            )
        else:
            table.add_row(
                escape(Path(s.file).name), "", "", "", "", "", f"[red]skipped: {escape(s.error or '')}[/red]"
            )
    return table
