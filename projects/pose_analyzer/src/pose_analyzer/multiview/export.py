"""Exports of a 3D series: OpenSim ``.trc``, CSV, the reprojection-error plot, overlays.

TRC is the marker file OpenSim's scaling and inverse kinematics read (the layout Pose2Sim
writes): five header lines (path type, the rate/count line and its values in metres, the
marker names, the X/Y/Z column labels), then one tab-separated row per frame.  OpenSim is
Y-up: a Z-up rig (Qualisys, Pose2Sim) is turned as Pose2Sim's ``zup2yup`` turns it,
(X, Y, Z)_opensim = (Y, Z, X)_rig, a cyclic permutation, so still a right-handed frame.
Missing markers are written ``NaN``, which OpenSim reads as missing.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pose_analyzer.keypoints import KEYPOINT_NAMES, SKELETON

FloatArray = npt.NDArray[np.float64]
_ZUP_TO_YUP = np.array([1, 2, 0])  # columns (Y, Z, X) of a Z-up rig become OpenSim's (X, Y, Z)


def _num(value: float, digits: int = 6) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "NaN"


def write_trc(
    path: Path,
    points: npt.ArrayLike,
    fps: float,
    marker_names: Sequence[str] = KEYPOINT_NAMES,
    z_up: bool = True,
    first_frame: int = 0,
) -> None:
    """Write points (T, K, 3) in metres as an OpenSim TRC at ``fps`` frames per second.

    ``z_up`` turns a Z-up rig into OpenSim's Y-up frame; frames are numbered from
    ``first_frame + 1`` as OpenSim counts them.
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 3 or p.shape[2] != 3 or p.shape[1] != len(marker_names):
        raise ValueError(f"points must be (T, {len(marker_names)}, 3), got {p.shape}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if z_up:
        p = p[..., _ZUP_TO_YUP]
    n_frames, n_markers = p.shape[:2]
    lines = [
        f"PathFileType\t4\t(X/Y/Z)\t{path.name}",
        "DataRate\tCameraRate\tNumFrames\tNumMarkers\tUnits\tOrigDataRate\tOrigDataStartFrame\tOrigNumFrames",
        f"{fps:g}\t{fps:g}\t{n_frames}\t{n_markers}\tm\t{fps:g}\t{first_frame + 1}\t{n_frames}",
        "Frame#\tTime\t" + "\t\t\t".join(marker_names) + "\t\t\t",
        "\t\t" + "\t".join(f"X{i + 1}\tY{i + 1}\tZ{i + 1}" for i in range(n_markers)),
    ]
    for f in range(n_frames):
        values = "\t".join(_num(v) for v in p[f].reshape(-1).tolist())
        lines.append(f"{first_frame + f + 1}\t{f / fps:.6f}\t{values}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_trc(path: Path) -> tuple[list[str], FloatArray, FloatArray]:
    """Marker names, times (T,) and points (T, K, 3) of a TRC as ``write_trc`` writes it (as stored, Y-up)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    names = [n for n in lines[3].split("\t")[2:] if n]
    rows = [line.split("\t") for line in lines[5:] if line.strip()]
    times = np.array([float(r[1]) for r in rows])
    values = np.array([[float(v) for v in r[2:]] for r in rows]).reshape(len(rows), len(names), 3)
    return names, times, values


def write_series_csv(
    path: Path,
    times: npt.ArrayLike,
    points: npt.ArrayLike,
    reprojection_px: npt.ArrayLike,
    angles: dict[str, FloatArray],
    marker_names: Sequence[str] = KEYPOINT_NAMES,
) -> None:
    """One row per frame: time, x/y/z (m) and reprojection error (px) per keypoint, then angles (deg).

    Missing values are empty cells.
    """
    t = np.asarray(times, dtype=np.float64)
    p = np.asarray(points, dtype=np.float64)
    err = np.asarray(reprojection_px, dtype=np.float64)
    header = ["frame", "time"]
    for name in marker_names:
        header += [f"{name}_x", f"{name}_y", f"{name}_z", f"{name}_reproj_px"]
    header += list(angles)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for f in range(t.size):
            row = [str(f), f"{t[f]:.4f}"]
            for k in range(len(marker_names)):
                row += [_cell(v, 5) for v in p[f, k]] + [_cell(err[f, k], 2)]
            row += [_cell(series[f], 2) for series in angles.values()]
            writer.writerow(row)


def _cell(value: float, digits: int) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else ""


def plot_reprojection(
    path: Path,
    times: npt.ArrayLike,
    per_camera_px: npt.ArrayLike,
    camera_names: Sequence[str],
    per_keypoint_px: npt.ArrayLike,
    marker_names: Sequence[str] = KEYPOINT_NAMES,
) -> None:
    """PNG: mean reprojection error per frame for each camera, and per keypoint over the clip.

    ``per_camera_px`` (T, C) and ``per_keypoint_px`` (K,) in pixels (NaN where unseen).
    """
    figure = Figure(figsize=(12, 7), dpi=100)
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1)
    t = np.asarray(times, dtype=np.float64)
    cams = np.asarray(per_camera_px, dtype=np.float64)
    for c, name in enumerate(camera_names):
        top.plot(t, cams[:, c], label=name, linewidth=1.2)
    top.set_xlabel("time (s)")
    top.set_ylabel("mean reprojection error (px)")
    top.legend(loc="upper right", fontsize=8)
    top.grid(alpha=0.3)
    kp = np.asarray(per_keypoint_px, dtype=np.float64)
    bottom.bar(range(kp.size), np.nan_to_num(kp), color="C0")
    bottom.set_xticks(range(kp.size), list(marker_names), rotation=60, ha="right", fontsize=7)
    bottom.set_ylabel("mean over the clip (px)")
    figure.tight_layout()
    figure.savefig(path)


def draw_reprojection(
    image: npt.NDArray[np.uint8], detected: FloatArray, reprojected: FloatArray, scale: float = 1.0
) -> npt.NDArray[np.uint8]:
    """The frame with the detected points (green) and the reprojected 3D skeleton (red).

    ``detected`` and ``reprojected`` (K, 2) are pixels of the calibrated image; ``scale``
    maps them to this image's pixels.
    """
    canvas = image.copy()

    def at(points: FloatArray, k: int) -> tuple[int, int] | None:
        x, y = points[k] * scale
        return (round(x), round(y)) if math.isfinite(x) and math.isfinite(y) else None

    for a, b in SKELETON:
        pa, pb = at(reprojected, a), at(reprojected, b)
        if pa is not None and pb is not None:
            cv2.line(canvas, pa, pb, (0, 0, 255), 2, cv2.LINE_AA)
    for k in range(len(detected)):
        for points, color, radius in ((detected, (0, 200, 0), 5), (reprojected, (0, 0, 255), 3)):
            p = at(points, k)
            if p is not None:
                cv2.circle(canvas, p, radius, color, -1, cv2.LINE_AA)
    return np.asarray(canvas, dtype=np.uint8)
