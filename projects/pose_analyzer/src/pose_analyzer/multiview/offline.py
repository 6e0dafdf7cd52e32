"""Offline 3D from synchronised videos: detect per camera, triangulate, analyse, export.

The videos are synchronised (frame i of every video was captured at the same time), so a
group is the i-th frame of each.  Each camera gets its own MediaPipe instance (MediaPipe
tracks one person across one stream's frames), detection runs on frames downscaled to
``max_width`` and the keypoints are mapped back to the pixels of the calibrated image.

A video whose frame size differs from its camera's calibrated image size: when the aspect
ratio is the same it is a scaled copy and the coordinates are scaled; otherwise its pixels
are used as they are, as Pose2Sim does (the demo's cam01 and cam02 videos are 1080 px wide
against a 1088 px calibration), and the result says so.

Each group is triangulated as a live single-person session does it: ``Triangulator``, then the
person's limbs refined with the segment lengths learnt over the clip so far
(``bones.BoneLengthPrior``, causal, one group after the other), so that the offline figures
are those of the live path.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pose_analyzer.biomechanics.angles import ANGLE_NAMES
from pose_analyzer.detection.mediapipe import MediaPipeDetector
from pose_analyzer.keypoints import NUM_KEYPOINTS
from pose_analyzer.multiview.biomechanics3d import (
    SEGMENT_NAMES,
    TrajectorySmoother3D,
    analyse_pose_3d,
    butterworth_filter,
    coefficient_of_variation,
)
from pose_analyzer.multiview.bones import BoneLengthPrior
from pose_analyzer.multiview.export import draw_reprojection, plot_reprojection, write_series_csv, write_trc
from pose_analyzer.multiview.rig import Camera, CameraRig, RigError
from pose_analyzer.multiview.triangulation import DEFAULT_MIN_CONFIDENCE, DEFAULT_OUTLIER_PX, Triangulator
from pose_analyzer.video_io import FrameWriter, MediaInfo, iter_frames, probe

FloatArray = npt.NDArray[np.float64]
# Rigid bones whose length variation the summary reports (a rigid bone should not change length).
BONES: tuple[str, ...] = ("thigh", "shank", "upper_arm", "forearm")
CONTINUITY_ANGLES: tuple[str, ...] = ("left_knee", "right_knee", "left_hip", "right_hip")
_ASPECT_TOLERANCE = 1e-3


@dataclass(frozen=True)
class CameraVideo:
    """One synchronised video and the rig camera that filmed it."""

    camera: Camera
    info: MediaInfo
    scale: tuple[float, float]  # video pixels -> calibrated pixels (x, y)
    note: str = ""


def calibration_scale(
    frame_size: tuple[int, int], calibrated: tuple[int, int]
) -> tuple[tuple[float, float], str]:
    """How video pixels map to calibrated pixels, and a note when they do not simply match."""
    (fw, fh), (cw, ch) = frame_size, calibrated
    if (fw, fh) == (cw, ch):
        return (1.0, 1.0), ""
    if abs(fw / fh - cw / ch) < _ASPECT_TOLERANCE * cw / ch:
        return (cw / fw, ch / fh), f"video {fw}x{fh} scaled to the calibrated {cw}x{ch}"
    return (1.0, 1.0), f"video {fw}x{fh} differs from the calibrated {cw}x{ch}; pixels used as they are"


def match_videos(
    videos: Sequence[Path], rig: CameraRig, cameras: Sequence[str] | None = None
) -> list[CameraVideo]:
    """Pair each video with its rig camera: ``cameras`` in order, else by file name, else in rig order.

    Raises:
        RigError: a named camera is not in the rig, or the pairing is ambiguous.
        MediaError: a video cannot be read.
    """
    if len(videos) < 2:
        raise RigError("triangulation needs at least two synchronised videos")
    if cameras is not None:
        if len(cameras) != len(videos):
            raise RigError(f"{len(videos)} videos but {len(cameras)} camera names")
        names = list(cameras)
    else:
        stems = [v.name.split(".")[0].lower() for v in videos]
        by_name = {n.lower(): n for n in rig.names}
        names = [by_name.get(s, "") for s in stems]
        if not all(names) or len(set(names)) != len(names):
            if len(videos) != len(rig):
                raise RigError(
                    f"cannot tell which camera filmed which video: name them (--cameras) or give one "
                    f"video per rig camera ({', '.join(rig.names)}) in that order"
                )
            names = list(rig.names)
    out = []
    for video, name in zip(videos, names, strict=True):
        cam = rig.camera(name)
        info = probe(video)
        scale, note = calibration_scale((info.width, info.height), cam.image_size)
        out.append(CameraVideo(cam, info, scale, note))
    return out


@dataclass
class MultiviewSeries:
    """Everything measured over a clip; arrays are indexed by frame first."""

    cameras: tuple[str, ...]
    fps: float
    times: FloatArray  # (T,)
    points2d: FloatArray  # (T, C, K, 2) calibrated pixels
    confidence: FloatArray  # (T, C, K)
    points: FloatArray  # (T, K, 3) metres
    reprojection_px: FloatArray  # (T, K)
    camera_error_px: FloatArray  # (T, C, K) raw reprojection error per camera, NaN where unused
    timings_s: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def run_multiview(
    videos: Sequence[CameraVideo],
    *,
    max_width: int | None = 720,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    outlier_px: float = DEFAULT_OUTLIER_PX,
    overlay_dir: Path | None = None,
    on_group: Callable[[int], None] | None = None,
    max_groups: int | None = None,
    bone_prior: bool = True,
) -> MultiviewSeries:
    """Detect, triangulate and time every synchronised group of ``videos``.

    With ``bone_prior`` (the default, as live sessions) each group's limbs are refined by a
    ``BoneLengthPrior`` learning over the clip; without it the points are the triangulation's.

    With ``overlay_dir``, each camera's frames are written there with the detected points
    (green) and the reprojected 3D skeleton (red).  ``on_group`` is called after each group;
    ``max_groups`` stops after that many.
    """
    rig = CameraRig(tuple(v.camera for v in videos))
    tri = Triangulator(rig, rig.names, min_confidence=min_confidence, outlier_px=outlier_px)
    prior = BoneLengthPrior() if bone_prior else None
    fps = videos[0].info.fps
    notes = [f"{v.camera.name}: {v.note}" for v in videos if v.note]
    if len({round(v.info.fps, 3) for v in videos}) > 1:
        notes.append(
            f"frame rates differ ({', '.join(f'{v.info.fps:g}' for v in videos)}); times use {fps:g}"
        )
    pts: list[FloatArray] = []
    conf: list[FloatArray] = []
    out_points: list[FloatArray] = []
    errors: list[FloatArray] = []
    per_keypoint: list[FloatArray] = []
    timings = {"detect_s": 0.0, "triangulate_s": 0.0, "analyse_s": 0.0}
    with ExitStack() as stack:
        detectors = []
        for _ in videos:
            detector = MediaPipeDetector()
            detector.setup()
            stack.callback(detector.close)
            detectors.append(detector)
        writers = []
        if overlay_dir is not None:
            overlay_dir.mkdir(parents=True, exist_ok=True)
            for v in videos:
                writers.append(
                    stack.enter_context(FrameWriter(overlay_dir / f"{v.camera.name}.overlay.mp4", fps))
                )
        streams = [iter_frames(v.info, max_width) for v in videos]
        for index, frames in enumerate(zip(*streams, strict=False)):
            if max_groups is not None and index >= max_groups:
                break
            group_2d = np.full((len(videos), NUM_KEYPOINTS, 2), np.nan)
            group_conf = np.zeros((len(videos), NUM_KEYPOINTS))
            start = time.perf_counter()
            for c, (video, detector, frame) in enumerate(zip(videos, detectors, frames, strict=True)):
                people = detector.detect([frame])[0].people
                if people:
                    kps = people[0].keypoints.astype(np.float64)
                    down = video.info.width / frame.image.shape[1], video.info.height / frame.image.shape[0]
                    group_2d[c] = kps[:, :2] * np.array(down) * np.array(video.scale)
                    group_conf[c] = kps[:, 2]
            mid = time.perf_counter()
            result = tri(group_2d, group_conf)
            if prior is not None:
                result = prior(result, tri)
            triangulated = time.perf_counter()
            analyse_pose_3d(result.points)  # timed as a live session runs it; summarise() recomputes
            timings["detect_s"] += mid - start
            timings["triangulate_s"] += triangulated - mid
            timings["analyse_s"] += time.perf_counter() - triangulated
            if writers:
                reprojected = tri.project(result.points)
                for c, (video, frame, writer) in enumerate(zip(videos, frames, writers, strict=True)):
                    to_frame = frame.image.shape[1] / (video.info.width * video.scale[0])
                    writer.write(draw_reprojection(frame.image, group_2d[c], reprojected[c], to_frame))
            pts.append(group_2d)
            conf.append(group_conf)
            out_points.append(result.points)
            errors.append(
                tri.project_errors(result.points, group_2d)
                if result.camera_error_px is None
                else result.camera_error_px
            )
            per_keypoint.append(result.reprojection_px)
            if on_group is not None:
                on_group(index)
    counts = {v.info.frame_count for v in videos}
    if len(counts) > 1:
        notes.append(f"videos have different lengths ({sorted(counts)} frames); stopped at the shortest")
    errs = np.array(errors).reshape(-1, len(videos), NUM_KEYPOINTS)
    return MultiviewSeries(
        cameras=rig.names,
        fps=fps,
        times=np.arange(len(out_points)) / fps,
        points2d=np.array(pts).reshape(-1, len(videos), NUM_KEYPOINTS, 2),
        confidence=np.array(conf).reshape(-1, len(videos), NUM_KEYPOINTS),
        points=np.array(out_points).reshape(-1, NUM_KEYPOINTS, 3),
        reprojection_px=np.array(per_keypoint).reshape(-1, NUM_KEYPOINTS),
        camera_error_px=errs,
        timings_s=timings,
        notes=notes,
    )


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence numpy's 'mean of empty slice' warnings: all-NaN columns are expected here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def angle_series(points: FloatArray) -> dict[str, FloatArray]:
    """Every ``ANGLE_NAMES`` angle over the clip, from points (T, K, 3)."""
    if points.shape[0] == 0:
        return {name: np.empty(0) for name in ANGLE_NAMES}
    values = np.array([list(analyse_pose_3d(p).angles.values()) for p in points])
    return {name: values[:, i] for i, name in enumerate(ANGLE_NAMES)}


def _max_jump(series: FloatArray) -> float:
    jumps = np.abs(np.diff(series))
    return float(np.nanmax(jumps)) if np.isfinite(jumps).any() else float("nan")


def _shape_figures(points: FloatArray) -> dict[str, dict[str, float]]:
    """Bone-length CV and the largest frame-to-frame jump of the knee and hip angles."""
    lengths = np.array([list(analyse_pose_3d(p).segments.values()) for p in points])
    cv = coefficient_of_variation(lengths) if lengths.size else np.full(len(SEGMENT_NAMES), np.nan)
    by_segment = dict(zip(SEGMENT_NAMES, cv.tolist(), strict=True))
    angles = angle_series(points)
    return {
        "bone_length_cv": {
            f"{side}_{b}": by_segment[f"{side}_{b}"] for b in BONES for side in ("left", "right")
        },
        "max_angle_jump_deg": {name: _max_jump(angles[name]) for name in CONTINUITY_ANGLES},
    }


def summarise(series: MultiviewSeries, filter_hz: float | None = 6.0) -> dict[str, Any]:
    """The clip's figures: reprojection error, bone-length variation, angle continuity, timings.

    Bone lengths and angle jumps are given for the raw triangulated points (``raw``), after
    the live path's causal One Euro filter (``live``, ``TrajectorySmoother3D``) and after the
    offline zero-lag Butterworth filter written to the TRC (``filtered``).
    """
    err = series.reprojection_px[np.isfinite(series.reprojection_px)]
    n = series.points.shape[0]
    smoother = TrajectorySmoother3D()
    variants = {
        "raw": series.points,
        "live": np.array(
            [smoother.update(p, float(t)) for p, t in zip(series.points, series.times, strict=True)]
        ),
    }
    if filter_hz and n > 30:
        variants["filtered"] = butterworth_filter(series.points, series.fps, filter_hz)
    shapes = {name: _shape_figures(points.reshape(-1, NUM_KEYPOINTS, 3)) for name, points in variants.items()}
    return {
        "frames": int(n),
        "fps": series.fps,
        "cameras": list(series.cameras),
        "triangulated_fraction": float(np.isfinite(series.points[..., 0]).mean()) if n else 0.0,
        "reprojection_px": {
            "mean": float(err.mean()) if err.size else None,
            "p95": float(np.percentile(err, 95)) if err.size else None,
            "by_camera": {
                name: _finite_mean(series.camera_error_px[:, c]) for c, name in enumerate(series.cameras)
            },
        },
        "bone_length_cv": {name: s["bone_length_cv"] for name, s in shapes.items()},
        "max_angle_jump_deg": {name: s["max_angle_jump_deg"] for name, s in shapes.items()},
        "timings_ms_per_group": {
            k.removesuffix("_s"): 1000.0 * v / max(n, 1) for k, v in series.timings_s.items()
        },
        "notes": series.notes,
    }


def _finite_mean(values: FloatArray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None


def write_outputs(
    series: MultiviewSeries, output_dir: Path, stem: str, filter_hz: float | None = 6.0
) -> list[Path]:
    """Write ``<stem>.trc`` (filtered when ``filter_hz``), ``<stem>.csv`` (raw) and the reprojection plot."""
    output_dir.mkdir(parents=True, exist_ok=True)
    points = series.points
    if filter_hz and points.shape[0] > 30:
        points = butterworth_filter(points, series.fps, filter_hz)
    trc, csv_path, png = (output_dir / f"{stem}{s}" for s in (".trc", ".csv", ".reprojection.png"))
    write_trc(trc, points, series.fps)
    write_series_csv(
        csv_path, series.times, series.points, series.reprojection_px, angle_series(series.points)
    )
    with _quiet():
        per_camera = np.nanmean(series.camera_error_px, axis=2)
        per_keypoint = (
            np.nanmean(series.reprojection_px, axis=0) if len(series.times) else np.zeros(NUM_KEYPOINTS)
        )
    plot_reprojection(png, series.times, per_camera, series.cameras, per_keypoint)
    return [trc, csv_path, png]
