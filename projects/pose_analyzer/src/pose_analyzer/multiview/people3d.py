"""Several people in 3D: associate across cameras, triangulate each, keep each one's id over time.

``MultiPersonTriangulator`` is the multi-person counterpart of ``Triangulator``: it takes every
camera's list of detected people, groups them (``association.EpipolarAssociator``),
triangulates each group with the cameras that saw it (``Triangulator``, outlier rejection and
left/right swap correction included), joins groups of disjoint cameras that triangulate to one
place (one person split between camera pairs, ``_join_split``) and gives each 3D person an id
that ``PersonIds`` keeps from one moment to the next.

Ids: each 3D person's body centre (the mid-hip, else the mean of its triangulated keypoints)
is matched to the people of the previous moments by distance, one to one (Hungarian,
``scipy.optimize.linear_sum_assignment``), within ``gate_m`` plus what ``max_speed_mps``
allows since the person was last seen.  A person not matched gets a new id (ids are never
reused); a person unseen for more than ``keep_s`` is forgotten.

A ``Triangulator`` keeps the left/right swap state of the previous group (hysteresis) for one
person; here the state is reset before each person, since which person a group is becomes
known only after it is triangulated.  A swapped camera is still corrected when the labels fit
poorly, moment by moment.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from pose_analyzer.keypoints import Keypoint
from pose_analyzer.multiview.association import DEFAULT_THRESHOLD_PX, EpipolarAssociator, Match
from pose_analyzer.multiview.biomechanics3d import Analysis3D, TrajectorySmoother3D, analyse_pose_3d
from pose_analyzer.multiview.rig import CameraRig
from pose_analyzer.multiview.triangulation import (
    DEFAULT_MIN_CONFIDENCE,
    DEFAULT_OUTLIER_PX,
    Triangulation,
    Triangulator,
)

FloatArray = npt.NDArray[np.float64]
# A person between two moments of a live session (at least 10 per second): a centre moves
# a few centimetres, a mid-hip triangulated from other cameras up to ~10 cm more; two people
# stand half a metre apart and more.
DEFAULT_GATE_M = 0.3
DEFAULT_MAX_SPEED_MPS = 3.0  # a brisk walk, and more than any exercise moves the hips
DEFAULT_KEEP_S = 1.0
# Mid-hips closer than this are one person (two people's hips are a body's depth apart at least).
JOIN_M = 0.2


@dataclass(frozen=True)
class Person3D:
    """One person of one moment: its id, its match across cameras and its triangulation."""

    id: int
    match: Match
    triangulation: Triangulation

    @property
    def cameras(self) -> tuple[str, ...]:
        return self.match.cameras

    @property
    def points(self) -> FloatArray:
        return self.triangulation.points


def body_centre(points: FloatArray) -> FloatArray:
    """The mid-hip (3,) of ``points`` (K, 3), else the mean of its finite keypoints, else NaN."""
    hips = points[[Keypoint.LEFT_HIP, Keypoint.RIGHT_HIP]]
    if points.shape[0] > Keypoint.RIGHT_HIP and np.isfinite(hips).all():
        return np.asarray(hips.mean(axis=0))
    finite = np.isfinite(points).all(axis=1)
    return np.asarray(points[finite].mean(axis=0)) if finite.any() else np.full(3, np.nan)


@dataclass
class _Track:
    centre: FloatArray
    seen: float


@dataclass
class PersonIds:
    """Stable ids for the 3D people of successive moments (module doc)."""

    gate_m: float = DEFAULT_GATE_M
    max_speed_mps: float = DEFAULT_MAX_SPEED_MPS
    keep_s: float = DEFAULT_KEEP_S
    _tracks: dict[int, _Track] = field(default_factory=dict)
    _next: int = 0

    def assign(self, centres: npt.ArrayLike, timestamp: float) -> list[int]:
        """Ids of the people whose centres (N, 3) are seen at ``timestamp`` (seconds), in order.

        A NaN centre gets a new id that is not remembered.
        """
        pts = np.asarray(centres, dtype=np.float64).reshape(-1, 3)
        self._tracks = {
            i: t for i, t in self._tracks.items() if -self.keep_s <= timestamp - t.seen <= self.keep_s
        }
        ids: list[int | None] = [None] * len(pts)
        finite = np.flatnonzero(np.isfinite(pts).all(axis=1))
        known = list(self._tracks.items())
        if finite.size and known:
            last = np.array([t.centre for _, t in known])
            gates = np.array([self.gate_m + self.max_speed_mps * abs(timestamp - t.seen) for _, t in known])
            dist = np.linalg.norm(pts[finite, None, :] - last[None, :, :], axis=-1)
            # Pairs beyond their gate cost more than any admissible set of pairs together.
            big = 1e6 * (1.0 + float(dist.max()))
            rows, cols = linear_sum_assignment(np.where(dist <= gates[None, :], dist, big))
            for r, c in zip(rows, cols, strict=True):
                if dist[r, c] <= gates[c]:
                    ids[finite[r]] = known[c][0]
        out = []
        for n, given in enumerate(ids):
            person = given if given is not None else self._new()
            if np.isfinite(pts[n]).all():
                self._tracks[person] = _Track(pts[n].copy(), timestamp)
            out.append(person)
        return out

    def _new(self) -> int:
        self._next += 1
        return self._next - 1

    def known(self) -> set[int]:
        """The ids of the people remembered (seen within ``keep_s`` of the last moment)."""
        return set(self._tracks)

    def reset(self) -> None:
        """Forget every person (ids go on increasing)."""
        self._tracks.clear()


class MultiPersonTriangulator:
    """Associate, triangulate and identify the people of one rig's synchronised groups."""

    def __init__(
        self,
        rig: CameraRig,
        *,
        threshold_px: float = DEFAULT_THRESHOLD_PX,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        outlier_px: float = DEFAULT_OUTLIER_PX,
        ids: PersonIds | None = None,
    ) -> None:
        self.rig = rig
        self.associator = EpipolarAssociator(rig, threshold_px=threshold_px, min_confidence=min_confidence)
        self.ids = ids if ids is not None else PersonIds()
        self._options = {"min_confidence": min_confidence, "outlier_px": outlier_px}
        self._triangulators: dict[tuple[str, ...], Triangulator] = {}

    def __call__(self, people: Mapping[str, npt.ArrayLike], timestamp: float) -> list[Person3D]:
        """The 3D people of one moment, ordered by id.

        ``people[camera]`` is (N, K, 3): x, y in the camera's calibrated raw pixels (NaN where
        unseen) and confidence, one row per detected person in any order; cameras that saw
        nobody may be left out.  ``timestamp`` (seconds) orders the moments for the ids.

        Raises:
            RigError: a camera that is not in the rig.
            ValueError: an array that is not (N, K, 3).
        """
        arrays = {name: np.asarray(v, dtype=np.float64) for name, v in people.items()}
        found = [self._triangulate(match, arrays) for match in self.associator.associate(arrays)]
        found = self._join_split(found, arrays)
        found = [(m, t) for m, t in found if np.isfinite(t.points).all(axis=1).any()]
        centres = np.array([body_centre(t.points) for _, t in found]).reshape(-1, 3)
        ids = self.ids.assign(centres, timestamp)
        out = [Person3D(i, m, t) for i, (m, t) in zip(ids, found, strict=True)]
        return sorted(out, key=lambda p: p.id)

    def _triangulate(self, match: Match, arrays: Mapping[str, FloatArray]) -> tuple[Match, Triangulation]:
        stacked = np.stack([arrays[cam][det] for cam, det in match.detections.items()])
        triangulator = self._triangulator(match.cameras)
        triangulator.reset()
        return match, triangulator(stacked[:, :, :2], stacked[:, :, 2])

    def _join_split(
        self, found: list[tuple[Match, Triangulation]], arrays: Mapping[str, FloatArray]
    ) -> list[tuple[Match, Triangulation]]:
        """Groups of disjoint cameras that triangulate to one place are one person, split.

        A person whose detections disagree between two camera pairs by more than the threshold
        (YOLO's athlete on the demo's facing cam01 and cam04, up to 48 px) can come out as two
        groups of two cameras, two 3D people at the same place; two people's mid-hips are never
        ``JOIN_M`` apart.  Such groups are joined and triangulated again from all their cameras
        (outlier rejection then drops the keypoints that disagree).
        """
        joined = True
        while joined:
            joined = False
            centres = [body_centre(t.points) for _, t in found]
            for i, j in combinations(range(len(found)), 2):
                (a, _), (b, _) = found[i], found[j]
                close = np.linalg.norm(centres[i] - centres[j]) < JOIN_M  # False when NaN
                if close and not set(a.cameras) & set(b.cameras):
                    names = self.rig.names
                    both = {**a.detections, **b.detections}
                    merged = Match({c: both[c] for c in names if c in both}, max(a.cost_px, b.cost_px))
                    found = [f for k, f in enumerate(found) if k not in (i, j)] + [
                        self._triangulate(merged, arrays)
                    ]
                    joined = True
                    break
        return found

    def _triangulator(self, cameras: tuple[str, ...]) -> Triangulator:
        tri = self._triangulators.get(cameras)
        if tri is None:
            tri = self._triangulators[cameras] = Triangulator(
                self.rig,
                cameras,
                min_confidence=self._options["min_confidence"],
                outlier_px=self._options["outlier_px"],
            )
        return tri


@dataclass(frozen=True, slots=True)
class PersonMoment:
    """One person of a live moment: its id, the cameras that saw it, its smoothed points (K, 3)
    metres, the triangulation's reprojection errors (K,) and the 3D analysis of the points."""

    id: int
    cameras: tuple[str, ...]
    points: FloatArray
    reprojection_px: FloatArray
    analysis: Analysis3D

    @property
    def angles(self) -> dict[str, float]:
        return self.analysis.angles

    @property
    def mean_reprojection_px(self) -> float:
        finite = self.reprojection_px[np.isfinite(self.reprojection_px)]
        return float(finite.mean()) if finite.size else math.nan


class LivePeople3D:
    """The people of a live multi-person session: triangulated, identified, and each one's
    trajectory smoothed (``TrajectorySmoother3D``, one per id) and analysed."""

    def __init__(self, rig: CameraRig) -> None:
        self.triangulate = MultiPersonTriangulator(rig)
        self._smoothers: dict[int, TrajectorySmoother3D] = {}

    def __call__(self, people: Mapping[str, npt.ArrayLike], timestamp: float) -> list[PersonMoment]:
        """``MultiPersonTriangulator``'s people of one moment, smoothed and analysed, by id.

        Raises:
            RigError, ValueError: as ``MultiPersonTriangulator``.
        """
        out = []
        for person in self.triangulate(people, timestamp):
            smoother = self._smoothers.setdefault(person.id, TrajectorySmoother3D())
            smoothed = smoother.update(person.points, timestamp)
            errors = person.triangulation.reprojection_px
            out.append(PersonMoment(person.id, person.cameras, smoothed, errors, analyse_pose_3d(smoothed)))
        for gone in self._smoothers.keys() - self.triangulate.ids.known():
            del self._smoothers[gone]
        return out
