"""Which detections in different cameras are the same person: epipolar matching across a rig.

A multi-person detector (YOLO) reports, per camera, a list of people in its own order.  Before
triangulation the people are grouped across cameras so that each group is one person seen by
two cameras or more:

1. **Pairwise cost.**  For every pair of cameras (i, j) of the rig, the fundamental matrix
   ``F_ij`` of the calibrated cameras maps a point of camera i to its epipolar line in camera
   j, on undistorted pixels (``cv2.undistortPoints`` with ``P = K``).  The cost of detection a
   of camera i against detection b of camera j is the median, over the keypoints confident in
   both (confidence >= ``min_confidence``), of the Sampson distance
   ``|x_j^T F x_i| / sqrt(|(F x_i)_12|^2 + |(F^T x_j)_12|^2)`` in pixels: to first order, the
   smallest move of the two points that puts them on each other's epipolar lines.  Not the
   symmetric epipolar distance: for two cameras facing each other across the subject
   (cam01 and cam04 of the demo rig) a point lies near the epipole, where its epipolar line
   turns a lot for a small move, and YOLO's points of one person read 50-180 px off each
   other's lines there; their Sampson distance is a third smaller, and it stays near the
   pixel noise for exact geometry.  The median rather than the mean: one wrong limb (a wrist
   put on the other person) must not hide a match.  The cost is also
   taken with b's left and right labels exchanged, and the smaller kept: a detector that sees
   a person from behind often swaps them (the triangulator corrects it afterwards), and that
   is still the same person.  Fewer than ``min_common`` common keypoints: no cost (inf).
   All pairs of detections of a camera pair are computed at once (numpy broadcasting).
2. **Grouping.**  Pairs under ``threshold_px`` are taken in increasing cost; a pair joins the
   groups of its two detections when those groups hold no camera twice and their detections
   agree with each other on the whole (mean finite cross cost <= ``threshold_px``, none over
   twice that).  Greedy rather than a per-pair Hungarian assignment: it groups any number of
   cameras, and a person missing from one camera (occluded, outside the frame) does not break
   the chain between the others.  Groups of one camera are left out: they cannot be
   triangulated.

Epipolar matching is ambiguous for two people on one epipolar plane of a camera pair; with
three cameras or more the cross check of step 2 separates them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations, count

import cv2
import numpy as np
import numpy.typing as npt

from pose_analyzer.keypoints import NUM_KEYPOINTS
from pose_analyzer.multiview.rig import Camera, CameraRig
from pose_analyzer.multiview.triangulation import DEFAULT_MIN_CONFIDENCE, MIRRORED

FloatArray = npt.NDArray[np.float64]

# Pose2Sim's association threshold on the same demo rig (reproj_error_threshold_association).
# On the shared clip YOLO's athlete costs 2-15 px between most camera pairs (up to 48 px between
# the facing cam01/cam04, which then leaves one camera out), the operator behind him 25 px and
# more from him; synthetic people 0.8 m apart cost 95 px in the median.
DEFAULT_THRESHOLD_PX = 20.0
# A median over fewer points says little: two keypoints could match by chance.
DEFAULT_MIN_COMMON = 4


@dataclass(frozen=True)
class Match:
    """One person across cameras: ``detections[camera]`` is its index in that camera's list."""

    detections: dict[str, int]
    cost_px: float  # mean pairwise cost of the group's detections

    @property
    def cameras(self) -> tuple[str, ...]:
        return tuple(self.detections)


def fundamental_matrix(a: Camera, b: Camera) -> FloatArray:
    """``F`` (3, 3) with ``x_b^T F x_a = 0`` for undistorted pixels of one world point in cameras a, b."""
    rot = b.rotation @ a.rotation.T
    t = b.translation - rot @ a.translation
    cross = np.array([[0.0, -t[2], t[1]], [t[2], 0.0, -t[0]], [-t[1], t[0], 0.0]])
    f = np.linalg.inv(b.matrix).T @ cross @ rot @ np.linalg.inv(a.matrix)
    return np.asarray(f / np.linalg.norm(f))


class EpipolarAssociator:
    """Groups the people detected by the cameras of one rig (method in the module doc)."""

    def __init__(
        self,
        rig: CameraRig,
        *,
        threshold_px: float = DEFAULT_THRESHOLD_PX,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        min_common: int = DEFAULT_MIN_COMMON,
    ) -> None:
        if not threshold_px > 0:
            raise ValueError(f"threshold_px must be positive, got {threshold_px}")
        self.rig = rig
        self.threshold_px = float(threshold_px)
        self.min_confidence = float(min_confidence)
        self.min_common = max(1, int(min_common))
        self._f = {(a.name, b.name): fundamental_matrix(a, b) for a, b in combinations(rig.cameras, 2)}

    def undistort(self, camera: str, people: FloatArray) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
        """Homogeneous undistorted pixels (N, K, 3) of ``people`` (N, K, 3: x, y, confidence) and
        the confident keypoints (N, K)."""
        cam = self.rig.camera(camera)
        xy, conf = people[..., :2], people[..., 2]
        ok = np.isfinite(xy).all(axis=-1) & np.isfinite(conf) & (conf >= self.min_confidence) & (conf > 0)
        flat = np.where(ok[..., None], xy, 0.0).reshape(-1, 1, 2)
        und = np.zeros((flat.shape[0], 2))
        if flat.shape[0]:
            und = np.asarray(cv2.undistortPoints(flat, cam.matrix, cam.distortion, P=cam.matrix), np.float64)
            und = und.reshape(-1, 2)
        hom = np.concatenate([und.reshape(*xy.shape), np.ones((*xy.shape[:-1], 1))], axis=-1)
        return hom, ok

    def pair_costs(
        self,
        f: FloatArray,
        a: tuple[FloatArray, npt.NDArray[np.bool_]],
        b: tuple[FloatArray, npt.NDArray[np.bool_]],
    ) -> FloatArray:
        """Cost (Na, Nb) in pixels between the undistorted people ``a`` and ``b`` of two cameras
        whose fundamental matrix is ``f`` (``x_b^T f x_a = 0``); inf where too few keypoints are common."""
        (xa, oka), (xb, okb) = a, b
        cost = _epipolar_cost(f, xa, oka, xb, okb, self.min_common)
        if xb.shape[1] == NUM_KEYPOINTS:
            mirrored = _epipolar_cost(f, xa, oka, xb[:, MIRRORED], okb[:, MIRRORED], self.min_common)
            cost = np.minimum(cost, mirrored)
        return cost

    def costs(self, people: Mapping[str, FloatArray]) -> dict[tuple[str, str], FloatArray]:
        """Every camera pair's cost matrix, keyed in rig order (first camera's people are rows)."""
        present = [name for name in self.rig.names if name in people and len(people[name])]
        prepared = {
            name: self.undistort(name, np.asarray(people[name], dtype=np.float64)) for name in present
        }
        return {
            (i, j): self.pair_costs(self._f[(i, j)], prepared[i], prepared[j])
            for i, j in combinations(present, 2)
        }

    def associate(self, people: Mapping[str, npt.ArrayLike]) -> list[Match]:
        """Group ``people[camera]`` ((N, K, 3) x, y, confidence in the camera's calibrated raw
        pixels, NaN where unseen) across cameras; cameras without people may be left out.

        Returns the groups of two cameras or more, those seen by more cameras first.

        Raises:
            RigError: a camera that is not in the rig.
            ValueError: an array that is not (N, K, 3).
        """
        arrays: dict[str, FloatArray] = {}
        for name, value in people.items():
            self.rig.camera(name)
            arr = np.asarray(value, dtype=np.float64)
            if arr.size == 0:
                continue
            if arr.ndim != 3 or arr.shape[2] != 3:
                raise ValueError(f"camera {name!r}: people must be (N, K, 3), got {arr.shape}")
            arrays[name] = arr
        costs = self.costs(arrays)
        return _group(costs, self.threshold_px, self.rig.names)


def _epipolar_cost(
    f: FloatArray,
    xa: FloatArray,
    oka: npt.NDArray[np.bool_],
    xb: FloatArray,
    okb: npt.NDArray[np.bool_],
    min_common: int,
) -> FloatArray:
    """Median Sampson distance (Na, Nb) over the keypoints both see; inf below ``min_common``."""
    lines_b = xa @ f.T  # (Na, K, 3): epipolar lines of a's points in camera b
    lines_a = xb @ f  # (Nb, K, 3): epipolar lines of b's points in camera a
    algebraic = np.abs(np.einsum("akc,bkc->abk", lines_b, xb))  # |x_b^T F x_a|
    gradient = (lines_b[..., 0] ** 2 + lines_b[..., 1] ** 2)[:, None, :] + (
        lines_a[..., 0] ** 2 + lines_a[..., 1] ** 2
    )[None, :, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        sampson = algebraic / np.sqrt(gradient)
    both = oka[:, None, :] & okb[None, :, :]
    dist = np.where(both, sampson, np.inf)
    dist = np.where(np.isnan(dist), np.inf, dist)
    n = both.sum(axis=-1)
    if dist.shape[-1] == 0:
        return np.full(n.shape, np.inf)
    ordered = np.sort(dist, axis=-1)  # the n finite distances first
    lo = np.take_along_axis(ordered, (np.maximum(n - 1, 0) // 2)[..., None], axis=-1)[..., 0]
    hi = np.take_along_axis(ordered, np.minimum(n // 2, dist.shape[-1] - 1)[..., None], axis=-1)[..., 0]
    with np.errstate(invalid="ignore"):
        median = 0.5 * (lo + hi)
    return np.asarray(np.where(n >= min_common, median, np.inf))


def _group(costs: dict[tuple[str, str], FloatArray], threshold: float, order: tuple[str, ...]) -> list[Match]:
    """Greedy grouping of the pairwise matches (module doc, step 2); cameras listed in ``order``."""
    edges = sorted(
        (float(m[a, b]), i, int(a), j, int(b))
        for (i, j), m in costs.items()
        for a, b in zip(*np.nonzero(m <= threshold), strict=True)
    )
    group_of: dict[tuple[str, int], int] = {}
    groups: dict[int, dict[str, int]] = {}
    new_keys = count()
    for _, i, a, j, b in edges:
        ga, gb = group_of.get((i, a)), group_of.get((j, b))
        if ga is not None and ga == gb:
            continue
        left = groups[ga] if ga is not None else {i: a}
        right = groups[gb] if gb is not None else {j: b}
        if left.keys() & right.keys():
            continue  # one camera's two detections are two people
        cross = np.array(
            [_cost(costs, ci, da, cj, db) for ci, da in left.items() for cj, db in right.items()]
        )
        finite = cross[np.isfinite(cross)]
        if finite.mean() > threshold or finite.max() > 2 * threshold:
            continue
        merged = {**left, **right}
        key = ga if ga is not None else gb if gb is not None else next(new_keys)
        for gone in (ga, gb):
            if gone is not None and gone != key:
                del groups[gone]
        groups[key] = merged
        for cam, det in merged.items():
            group_of[(cam, det)] = key
    matches = [Match({c: g[c] for c in order if c in g}, _mean_cost(costs, g)) for g in groups.values()]
    return sorted(matches, key=lambda m: (-len(m.detections), m.cost_px))


def _cost(costs: dict[tuple[str, str], FloatArray], ci: str, da: int, cj: str, db: int) -> float:
    if (ci, cj) in costs:
        return float(costs[(ci, cj)][da, db])
    return float(costs[(cj, ci)][db, da])


def _mean_cost(costs: dict[tuple[str, str], FloatArray], group: dict[str, int]) -> float:
    values = [_cost(costs, ci, da, cj, db) for (ci, da), (cj, db) in combinations(group.items(), 2)]
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")
