"""What a live 3D session works on and produces: a camera's ``View`` of a frame (``view_of``) and
the triangulated ``Moment3D`` every stream of a group answers with (stored as a ``frames_3d`` row)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pose_analyzer.multiview.people3d import PersonMoment
from pose_analyzer.storage.rigs import Point3DFrame
from pose_analyzer.types import FrameAnalysis, RepRecord

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class View:
    """One camera's person in one frame: (K, 3) x, y (rig camera pixels), confidence; or nobody.

    ``others``: the frame's other people, for multi-person sessions.
    """

    keypoints: FloatArray | None
    others: tuple[FloatArray, ...] = ()

    @property
    def people(self) -> list[FloatArray]:
        return [] if self.keypoints is None else [self.keypoints, *self.others]


@dataclass(frozen=True, slots=True)
class Moment3D:
    """One triangulated moment, shared by the answers of every stream in its group."""

    seq: int
    capture_ts: float
    cameras: tuple[str, ...]
    missing: tuple[str, ...]
    lateness_s: dict[str, float]
    points: FloatArray | None  # (K, 3) metres, NaN where unseen; None: not triangulated
    reprojection_px: FloatArray | None  # (K,)
    angles: dict[str, float]
    rep_count: int
    phase: str
    rep: RepRecord | None
    # Everyone triangulated, the first person (whose points, angles and reps are above) first.
    people: tuple[PersonMoment, ...] = ()

    @property
    def person_id(self) -> int | None:
        return self.people[0].id if self.people else None

    @property
    def mean_reprojection_px(self) -> float:
        if self.reprojection_px is None or not np.isfinite(self.reprojection_px).any():
            return math.nan
        return float(np.nanmean(self.reprojection_px))

    def row(self) -> Point3DFrame:
        """The stored form (``storage.models.Frame3D``)."""

        def num(v: float) -> float | None:
            return float(v) if math.isfinite(v) else None

        data: dict[str, Any] = {
            "cameras": list(self.cameras),
            "keypoints": [] if self.points is None else _points_json(self.points),
            "reprojection_px": [] if self.reprojection_px is None else [num(v) for v in self.reprojection_px],
            "angles": {k: num(v) for k, v in self.angles.items()},
            "rep_count": self.rep_count,
        }
        if self.rep is not None:
            data["rep"] = {"index": self.rep.index, "score": num(self.rep.score)}
        if self.people:
            data["person_id"] = self.people[0].id
        if len(self.people) > 1:
            data["others"] = [
                {"id": p.id, "cameras": list(p.cameras), "keypoints": _points_json(p.points)}
                for p in self.people[1:]
            ]
        return Point3DFrame(self.seq, self.capture_ts, num(self.mean_reprojection_px), data)


def _points_json(points: FloatArray) -> list[list[float] | None]:
    return [None if any(map(math.isnan, p)) else [round(c, 5) for c in p] for p in points.tolist()]


def view_of(analysis: FrameAnalysis, image_size: tuple[int, int], every_person: bool = False) -> View:
    """The analysis' first person (and with ``every_person`` the others), in the pixels of the
    camera's calibrated image.

    A frame with the calibrated aspect ratio (to a pixel of rounding) is a scaled copy: each
    axis is scaled.  Any other frame was cropped before it was scaled (the demo rig's cam01 and
    cam02 film 1080 px of a 1088 px wide calibration): one scale, that of the axis not cropped
    (the smaller ratio), from the top-left corner, i.e. the camera's pixels as they are, as
    Pose2Sim and ``offline.calibration_scale`` take them.  (Stretching x by 1088/1080 instead
    put points up to 8 px off and raised the demo's reprojection errors.)
    """
    if not analysis.people or analysis.width <= 0 or analysis.height <= 0:
        return View(None)
    (fw, fh), (cw, ch) = (analysis.width, analysis.height), image_size
    sx, sy = cw / fw, ch / fh
    if abs(fw * ch / cw - fh) > 1.0 and abs(fh * cw / ch - fw) > 1.0:
        sx = sy = min(sx, sy)
    scale = np.array([sx, sy, 1.0])
    chosen = analysis.people if every_person else analysis.people[:1]
    people = [np.asarray(p.person.keypoints, dtype=np.float64) * scale for p in chosen]
    return View(people[0], tuple(people[1:]))
