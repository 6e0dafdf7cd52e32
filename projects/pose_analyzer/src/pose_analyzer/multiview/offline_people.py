"""Offline 3D of several people: a multi-person detector (YOLO) on synchronised videos.

The multi-person counterpart of ``offline.run_multiview``: the frames of one group go to the
detector in one batch, every person of every camera is kept, the people are associated across
cameras, triangulated and identified (``people3d.MultiPersonTriangulator``), and each person
gets its own ``MultiviewSeries`` over the whole clip (NaN where that person was not
triangulated), so the TRC, CSV, plot and summary writers of ``offline`` serve each one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from pose_analyzer.detection.base import Detector
from pose_analyzer.keypoints import NUM_KEYPOINTS
from pose_analyzer.multiview.association import DEFAULT_THRESHOLD_PX
from pose_analyzer.multiview.offline import CameraVideo, FloatArray, MultiviewSeries
from pose_analyzer.multiview.people3d import MultiPersonTriangulator, Person3D
from pose_analyzer.multiview.rig import CameraRig
from pose_analyzer.multiview.triangulation import DEFAULT_MIN_CONFIDENCE, DEFAULT_OUTLIER_PX
from pose_analyzer.video_io import iter_frames


class _Track:
    """One person's rows, filled frame by frame (NaN where the person is absent)."""

    def __init__(self, n_cams: int) -> None:
        self.n_cams = n_cams
        self.frames: dict[int, tuple[FloatArray, ...]] = {}

    def add(
        self, index: int, person: Person3D, views: dict[str, FloatArray], cameras: tuple[str, ...]
    ) -> None:
        pts = np.full((self.n_cams, NUM_KEYPOINTS, 2), np.nan)
        conf = np.zeros((self.n_cams, NUM_KEYPOINTS))
        errors = np.full((self.n_cams, NUM_KEYPOINTS), np.nan)
        tri = person.triangulation
        for row, (camera, det) in enumerate(person.match.detections.items()):
            c = cameras.index(camera)
            pts[c], conf[c] = views[camera][det, :, :2], views[camera][det, :, 2]
            if tri.camera_error_px is not None:
                errors[c] = tri.camera_error_px[row]
        self.frames[index] = (pts, conf, tri.points, tri.reprojection_px, errors)

    def series(self, cameras: tuple[str, ...], fps: float, count: int, notes: list[str]) -> MultiviewSeries:
        blank = (
            np.full((self.n_cams, NUM_KEYPOINTS, 2), np.nan),
            np.zeros((self.n_cams, NUM_KEYPOINTS)),
            np.full((NUM_KEYPOINTS, 3), np.nan),
            np.full(NUM_KEYPOINTS, np.nan),
            np.full((self.n_cams, NUM_KEYPOINTS), np.nan),
        )
        rows = [self.frames.get(i, blank) for i in range(count)]
        pts, conf, points, reproj, errors = (np.array([r[k] for r in rows]) for k in range(5))
        return MultiviewSeries(
            cameras=cameras,
            fps=fps,
            times=np.arange(count) / fps,
            points2d=pts.reshape(count, self.n_cams, NUM_KEYPOINTS, 2),
            confidence=conf.reshape(count, self.n_cams, NUM_KEYPOINTS),
            points=points.reshape(count, NUM_KEYPOINTS, 3),
            reprojection_px=reproj.reshape(count, NUM_KEYPOINTS),
            camera_error_px=errors.reshape(count, self.n_cams, NUM_KEYPOINTS),
            notes=list(notes),
        )


def run_multiview_people(
    videos: Sequence[CameraVideo],
    detector: Detector,
    *,
    max_width: int | None = 720,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    outlier_px: float = DEFAULT_OUTLIER_PX,
    threshold_px: float = DEFAULT_THRESHOLD_PX,
    on_group: Callable[[int], None] | None = None,
    max_groups: int | None = None,
) -> dict[int, MultiviewSeries]:
    """Detect (``detector``, set up by the caller), associate, triangulate and identify every
    person of every synchronised group of ``videos``; one series per person id.

    The detect, associate-and-triangulate times of the clip are in each series' ``timings_s``.
    """
    rig = CameraRig(tuple(v.camera for v in videos))
    triangulate = MultiPersonTriangulator(
        rig, threshold_px=threshold_px, min_confidence=min_confidence, outlier_px=outlier_px
    )
    fps = videos[0].info.fps
    notes = [f"{v.camera.name}: {v.note}" for v in videos if v.note]
    tracks: dict[int, _Track] = {}
    timings = {"detect_s": 0.0, "triangulate_s": 0.0}
    count = 0
    streams = [iter_frames(v.info, max_width) for v in videos]
    for index, frames in enumerate(zip(*streams, strict=False)):
        if max_groups is not None and index >= max_groups:
            break
        start = time.perf_counter()
        detections = detector.detect(list(frames))
        mid = time.perf_counter()
        views: dict[str, FloatArray] = {}
        for video, frame, found in zip(videos, frames, detections, strict=True):
            people = np.array([p.keypoints for p in found.people], dtype=np.float64).reshape(
                -1, NUM_KEYPOINTS, 3
            )
            down = video.info.width / frame.image.shape[1], video.info.height / frame.image.shape[0]
            people[..., :2] *= np.array(down) * np.array(video.scale)
            views[video.camera.name] = people
        for person in triangulate(views, index / fps):
            tracks.setdefault(person.id, _Track(len(videos))).add(index, person, views, rig.names)
        timings["detect_s"] += mid - start
        timings["triangulate_s"] += time.perf_counter() - mid
        count = index + 1
        if on_group is not None:
            on_group(index)
    out = {}
    for person_id, track in sorted(tracks.items()):
        series = track.series(rig.names, fps, count, notes)
        series.timings_s = dict(timings)
        out[person_id] = series
    return out
