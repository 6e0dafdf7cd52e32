"""Multi-view triangulation of one person's keypoints: weighted DLT with outlier-camera rejection.

For each keypoint, every camera that sees it (finite point, confidence at least
``min_confidence``) contributes the two DLT rows ``w (x P3 - P1)`` and ``w (y P3 - P2)``,
weighted by its confidence ``w``, where ``(x, y)`` is the undistorted point in normalised
camera coordinates (``cv2.undistortPoints``) and ``P = [R | t]``.  Normalised rather than
pixel coordinates keep the systems well conditioned (entries near 1, not 1e3).  A row's
residual is then the point's depth times its image error / f: cameras 3 m and 4.5 m away are
weighted 1 : 1.5 against least squares in pixels.  Re-solving with rows divided by the depth
changed the RMS error of the synthetic test by under 1 % (4.61 against 4.65 mm, Cramer-Rao
4.66), so it is not done.

Order per group: plain DLT; left/right swap correction when the labels fit poorly
(``Triangulator._side_swaps``); outlier-camera selection (``Triangulator._choose``);
raw-image reprojection errors.

All keypoints are solved at once, through their normal equations in closed form (``dlt``):
the homogeneous SVD of the same rows gives the same point for exact data
(test_multiview_triangulation compares them) but costs ten times as much, and this runs for
every synchronised group of a live session.  Arrays on the hot path keep the keypoints on
their last axis (see ``dlt``: numpy's per-call cost, not the arithmetic, is what a group of
21 keypoints pays for).

Outliers: every keypoint is triangulated from every camera subset missing at most two
cameras (for four cameras, every set of two or more), in the same batch.  While a keypoint
seen by more than two cameras has a camera reprojecting worse than ``outlier_px``, it moves
to the subset without one camera that has the smallest mean reprojection error; a keypoint
never drops below two cameras.  Reprojection errors are measured on the raw image through
OpenCV's distortion model (k1, k2, p1, p2, k3), computed here in numpy for all cameras at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from pose_analyzer.keypoints import KEYPOINT_NAMES, NUM_KEYPOINTS
from pose_analyzer.multiview.dlt import MIN_CAMERAS, dlt_basis, dlt_features, solve_dlt, solve_normal
from pose_analyzer.multiview.rig import CameraRig

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
__all__ = ["MIN_CAMERAS", "MIRRORED", "Triangulation", "Triangulator", "solve_dlt", "triangulate"]

# Pose2Sim's defaults for triangulation on the same demo rig: reproj_error_threshold_triangulation
# (px) and likelihood_threshold_triangulation.
DEFAULT_OUTLIER_PX = 15.0
DEFAULT_MIN_CONFIDENCE = 0.3
# Left/right swap detection (Triangulator._side_swaps).
_SWAP_CLIP_PX = 100.0
_SWAP_GAIN = 0.7
_SWAP_CHECK_PX = DEFAULT_OUTLIER_PX  # the labels as they stand fit this well: no swap is looked for
MIRRORED = np.array(
    [
        KEYPOINT_NAMES.index(n.replace("left", "@").replace("right", "left").replace("@", "right"))
        for n in KEYPOINT_NAMES
    ],
    dtype=np.intp,
)
_KEYPOINTS = np.arange(NUM_KEYPOINTS)
_SIDED = _KEYPOINTS != MIRRORED
# Outlier rejection drops at most this many cameras per keypoint (all but two of a 4-camera rig).
_MAX_DROPS = 2


@dataclass(frozen=True)
class Triangulation:
    """Triangulated keypoints of one synchronised group of frames.

    ``points`` (K, 3) metres in the rig's world frame and ``reprojection_px`` (K,) the mean
    reprojection error over the cameras used, both NaN where fewer than two cameras saw
    the keypoint; ``used`` (C, K) says which cameras each keypoint was triangulated from.
    """

    points: FloatArray
    reprojection_px: FloatArray
    used: BoolArray
    # Cameras whose left/right labels were swapped back before triangulating (see swap_sides);
    # ``used`` and ``camera_error_px`` refer to the corrected labels.
    swapped: tuple[str, ...] = ()
    # (C, K) raw reprojection error of each used camera, NaN elsewhere.
    camera_error_px: FloatArray | None = None
    # The inputs as triangulated, left/right labels corrected: raw pixels (C, K, 2), normalised
    # undistorted coordinates (C, K, 2, zero where unseen) and weights (C, K); for refinements
    # (``bones.BoneLengthPrior``) that re-solve points against the same observations.
    pixels: FloatArray | None = None
    normalised: FloatArray | None = None
    weights: FloatArray | None = None


class Triangulator:
    """Triangulation for a fixed list of rig cameras, with their constants prepared once.

    A live session builds one per rig and camera order and calls it for every group.
    """

    def __init__(
        self,
        rig: CameraRig,
        cameras: Sequence[str],
        *,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        outlier_px: float = DEFAULT_OUTLIER_PX,
        swap_sides: bool = True,
    ) -> None:
        self.cameras = tuple(cameras)
        self._cams = [rig.camera(name) for name in self.cameras]
        if len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"camera names repeat: {self.cameras}")
        self.min_confidence = float(min_confidence)
        self.outlier_px = float(outlier_px)
        self.extrinsics = np.stack([np.hstack([c.rotation, c.translation[:, None]]) for c in self._cams])
        k = np.stack([c.matrix for c in self._cams])  # (C, 3, 3)
        # Pixels per unit of normalised coordinates (the mean of fx and fy), per camera.
        self.focal_px = 0.5 * (k[:, 0, 0] + k[:, 1, 1])
        dist = np.stack([c.distortion for c in self._cams])  # (C, 5): k1, k2, p1, p2, k3
        # The projection's constants, shaped to broadcast over (C, 2, N) and (C, N) (``_pixels``).
        self._rotations = self.extrinsics[:, :, :3].reshape(-1, 3)  # (C * 3, 3)
        self._translations = self.extrinsics[:, :, 3].reshape(-1, 1)
        self._k1, self._k2 = dist[:, 0, None].copy(), dist[:, 1, None].copy()  # (C, 1)
        # k3 (C, 1); None when every camera's is 0 (most calibrations): two array calls fewer
        self._k3 = dist[:, 4, None].copy() if dist[:, 4].any() else None
        self._p1, self._p2 = 2 * dist[:, 2, None], 2 * dist[:, 3, None]  # (C, 1): 2 p1, 2 p2
        self._p21 = dist[:, [3, 2], None]  # (C, 2, 1): p2, p1
        self._intrinsics = k[:, :2, :2].copy()  # (C, 2, 2): fx, skew; 0, fy
        self._centres = k[:, :2, 2:].copy()  # (C, 2, 1)
        self.swap_sides = swap_sides
        self._swapped = np.zeros(len(self.cameras), dtype=bool)
        self._masks, self._child = _camera_subsets(len(self.cameras))
        self._has_child = (self._child >= 0)[:, :, None]
        self._child = np.maximum(self._child, 0)
        # Normal matrices (dlt): of the full set, and of every subset at once, rows (12 * S)
        # entry-major, so that ``(basis @ features).reshape(12, S * K)``.
        basis = dlt_basis(self.extrinsics)  # (12, C * 4)
        self._basis = basis
        self._subset_basis = (basis[:, None, :] * np.repeat(self._masks, 4, axis=1)[None]).reshape(
            -1, basis.shape[1]
        )
        self._reject = math.isfinite(self.outlier_px) and len(self.cameras) > MIN_CAMERAS

    def __call__(self, points2d: npt.ArrayLike, confidence: npt.ArrayLike) -> Triangulation:
        pts = np.array(points2d, dtype=np.float64)  # a copy: the result keeps it
        conf = np.asarray(confidence, dtype=np.float64)
        n_cams = len(self.cameras)
        if pts.ndim != 3 or pts.shape[0] != n_cams or pts.shape[2] != 2 or conf.shape != pts.shape[:2]:
            raise ValueError(
                f"points2d must be ({n_cams}, K, 2) and confidence ({n_cams}, K) for cameras "
                f"{self.cameras}; got {pts.shape} and {conf.shape}"
            )
        xy, seen = self._undistort(pts)
        # Positive and at least min_confidence; a NaN confidence fails the comparison.
        used = seen & ((conf >= self.min_confidence) if self.min_confidence > 0 else (conf > 0))
        weights = np.where(used, conf, 0.0)
        raw = (pts, xy, weights, used)
        check = self.swap_sides and pts.shape[1] == NUM_KEYPOINTS and n_cams > MIN_CAMERAS
        state = self._swapped if check and self._swapped.shape == (n_cams,) else np.zeros(n_cams, dtype=bool)
        inputs = _mirror_all(raw, state)
        table = self._table(inputs, every_subset=self._reject)
        if check:
            # table[1][:, 0] and table[2][0]: the errors and cameras of the plain DLT (all cameras)
            better = self._side_swaps(raw, state, table[1][:, 0], table[2][0])
            if better is not state and (better != state).any():
                state = better
                inputs = _mirror_all(raw, state)
                table = self._table(inputs, every_subset=self._reject)
            self._swapped = state
        swapped = tuple(name for name, f in zip(self.cameras, state.tolist(), strict=True) if f)
        points, used, err, mean_err = self._choose(*table)
        return Triangulation(points, mean_err, used, swapped, err, inputs[0], inputs[1], inputs[2])

    def _side_swaps(
        self,
        raw: tuple[FloatArray, FloatArray, FloatArray, BoolArray],
        current: BoolArray,
        err: FloatArray,
        used: BoolArray,
    ) -> BoolArray:
        """Cameras (C,) whose detector swapped the person's left and right, found by consistency.

        Seen from behind, a detector often labels the left limbs right, for as long as the
        person faces away.  The previous group's swaps (``current``, whose plain-DLT errors
        are ``err`` (C, K) over cameras ``used``) are kept while the left/right keypoints
        reproject within ``_SWAP_CHECK_PX`` on average (each keypoint's error clipped at
        ``_SWAP_CLIP_PX`` so that one wild point does not decide).  Otherwise every state with
        one camera toggled is triangulated, in one batch, and the best replaces the previous
        state when its error is below ``_SWAP_GAIN`` times the previous state's: a hysteresis,
        so that frames where both labellings fit (legs crossing in one view) keep the state
        instead of flickering.  At most a minority of cameras is swapped: swapping the
        majority instead is the same geometry with every label mirrored.
        """
        n_cams, n_kp = used.shape
        score_now = _sided_score(err, used)
        if score_now <= _SWAP_CHECK_PX:
            return current
        toggled = [v for v in (current ^ t for t in np.eye(n_cams, dtype=bool)) if 2 * v.sum() < n_cams]
        if not toggled:
            return current
        # Every toggled state's inputs side by side (C, T * K): one gather per input.
        index = _mirror_index(np.array(toggled)[:, :, None])  # (T, C, K)
        rows = np.arange(n_cams)[:, None]
        stacked = [a[rows, index].swapaxes(0, 1).reshape(n_cams, -1, *a.shape[2:]) for a in raw]
        c_err = self._table(stacked, every_subset=False)[1]
        scores = [
            _sided_score(c_err[:, 0, i * n_kp : (i + 1) * n_kp], stacked[3][:, i * n_kp : (i + 1) * n_kp])
            for i in range(len(toggled))
        ]
        i = int(np.nanargmin(scores)) if np.isfinite(scores).any() else -1
        if i >= 0 and (np.isnan(score_now) or scores[i] < _SWAP_GAIN * score_now):
            return np.asarray(toggled[i], dtype=bool)
        return current

    def reset(self) -> None:
        """Forget the left/right state of the previous groups (a new clip or a new person)."""
        self._swapped = np.zeros(len(self.cameras), dtype=bool)

    def _undistort(self, pts: FloatArray) -> tuple[FloatArray, BoolArray]:
        """Normalised undistorted coordinates (C, K, 2), zero where unseen, and the seen mask."""
        seen = np.isfinite(pts).all(axis=2)
        xy = np.empty_like(pts)
        for c, cam in enumerate(self._cams):  # OpenCV turns a non-finite point into NaN
            xy[c] = cv2.undistortPoints(pts[c], cam.matrix, cam.distortion).reshape(-1, 2)
        return np.where(seen[..., None], xy, 0.0), seen

    def project(self, points: FloatArray) -> FloatArray:
        """Raw pixel positions (C, N, 2) of world points (N, 3) in every camera (OpenCV's model)."""
        return self._pixels(np.asarray(points, dtype=np.float64).T).transpose(0, 2, 1)

    def camera_coordinates(self, points: FloatArray) -> FloatArray:
        """World points given as (3, N) in every camera's frame (C, 3, N), metres."""
        return np.asarray((self._rotations @ points + self._translations).reshape(len(self.cameras), 3, -1))

    def _pixels(self, points: FloatArray) -> FloatArray:
        """Raw pixel positions (C, 2, N) of world points given as (3, N)."""
        cam = self.camera_coordinates(points)
        with np.errstate(divide="ignore", invalid="ignore"):
            xy = cam[:, :2] / cam[:, 2:]  # (C, 2, N)
        x, y = xy[:, 0], xy[:, 1]
        r2 = x * x + y * y
        k2 = self._k2 if self._k3 is None else self._k2 + r2 * self._k3
        radial = 1 + r2 * (self._k1 + r2 * k2)
        # tangential terms: x += 2 p1 x y + p2 (r2 + 2 x^2) = p2 r2 + 2 x (p1 y + p2 x),
        # y += p1 (r2 + 2 y^2) + 2 p2 x y = p1 r2 + 2 y (p1 y + p2 x)
        tangential = x * self._p2 + y * self._p1
        dist = xy * (radial + tangential)[:, None] + r2[:, None] * self._p21
        # u = fx x + skew y + cx, v = fy y + cy
        return np.asarray(self._intrinsics @ dist + self._centres)

    def project_errors(self, points: FloatArray, points2d: FloatArray) -> FloatArray:
        """Raw-image reprojection errors (C, N) in pixels; NaN where either side is missing."""
        diff = self._pixels(np.asarray(points, dtype=np.float64).T) - points2d.transpose(0, 2, 1)
        return np.asarray(np.hypot(diff[:, 0], diff[:, 1]))

    def _table(
        self, inputs: Sequence[npt.NDArray[Any]], every_subset: bool = True
    ) -> tuple[FloatArray, FloatArray, BoolArray, npt.NDArray[np.intp]]:
        """Every keypoint triangulated from every camera subset at once (one batched solve).

        The subsets are all camera sets missing at most ``_MAX_DROPS`` cameras (for four
        cameras: every set of two or more), the full set first; only the full set when
        ``every_subset`` is false.  ``inputs`` are the raw points, normalised points, weights
        and seen cameras (all (C, K, ...)).  Returns points (3, S, K), errors (C, S, K), the
        cameras of each subset and keypoint (S, C, K) and their number (S, K).
        """
        pts, xy, weights, used = inputs
        n_cams, n_kp = used.shape
        n_sets = len(self._masks) if every_subset else 1
        eff = used[None] & self._masks[:n_sets, :, None]
        basis = self._subset_basis if every_subset else self._basis
        normal = (basis @ dlt_features(xy, weights)).reshape(12, n_sets * n_kp)
        count = eff.sum(axis=1)
        points = solve_normal(normal, (count >= MIN_CAMERAS).reshape(-1))
        diff = self._pixels(points).reshape(n_cams, 2, n_sets, n_kp) - pts.transpose(0, 2, 1)[:, :, None]
        return points.reshape(3, n_sets, n_kp), np.hypot(diff[:, 0], diff[:, 1]), eff, count

    def _choose(
        self, points_all: FloatArray, err_all: FloatArray, eff: BoolArray, count: npt.NDArray[np.intp]
    ) -> tuple[FloatArray, BoolArray, FloatArray, FloatArray]:
        """Drop outlier cameras keypoint by keypoint, by bookkeeping over the subset table.

        Starting from all cameras, a keypoint whose worst camera reprojects beyond
        ``outlier_px`` (or whose point is singular) moves to the subset without one camera
        that has the smallest mean reprojection error, while it keeps more than two cameras.
        The move out of every subset is decided for all of them at once, then followed
        ``_MAX_DROPS`` times.  Returns points (K, 3), the cameras used (C, K), their errors
        (C, K, NaN elsewhere) and the mean error (K,), NaN where fewer than two cameras.
        """
        n_sets, _, n_kp = eff.shape
        kps = np.arange(n_kp)
        in_set = eff.transpose(1, 0, 2)
        errors = np.where(in_set, err_all, 0.0)  # (C, S, K), errors are >= 0
        # Mean error of every subset's point (S, K), NaN with fewer than two cameras.
        mean = errors.sum(axis=0) / np.where(count >= MIN_CAMERAS, count, np.nan)
        if n_sets == 1:
            state = np.zeros(n_kp, dtype=np.intp)
        else:
            worst = errors.max(axis=0)  # NaN: a singular point
            # np.fmin: a NaN mean (a singular point) scores inf.
            score = np.where(self._has_child & eff, np.fmin(mean, np.inf)[self._child], np.inf)  # (S, C, K)
            drop = score.argmin(axis=1)
            moves = (count > MIN_CAMERAS) & ~(worst <= self.outlier_px) & (score.min(axis=1) < np.inf)
            sets = np.arange(n_sets)[:, None]
            after = np.where(moves, self._child[sets, drop], sets)
            state = after[0]
            for _ in range(_MAX_DROPS - 1):
                state = after[state, kps]
        used = eff[state, :, kps].T & (count[state, kps] >= MIN_CAMERAS)
        return (
            points_all[:, state, kps].T,
            used,
            np.where(used, err_all[:, state, kps], np.nan),
            mean[state, kps],
        )


def _camera_subsets(n_cams: int) -> tuple[BoolArray, npt.NDArray[np.intp]]:
    """Camera sets missing at most ``_MAX_DROPS`` cameras (never fewer than two), the full set first,
    and ``child[s, d]``: the index of set ``s`` without camera ``d`` (-1 when not in the table)."""
    smallest = max(MIN_CAMERAS, n_cams - _MAX_DROPS)
    sets = [
        frozenset(c) for size in range(n_cams, smallest - 1, -1) for c in combinations(range(n_cams), size)
    ]
    index = {s: i for i, s in enumerate(sets)}
    masks = np.array([[c in s for c in range(n_cams)] for s in sets], dtype=bool).reshape(len(sets), n_cams)
    child = np.array(
        [[index.get(s - {d}, -1) if d in s else -1 for d in range(n_cams)] for s in sets], dtype=np.intp
    )
    return masks, child.reshape(len(sets), n_cams)


def _sided_score(err: FloatArray, used: BoolArray) -> float:
    """Mean over the left/right keypoints of their mean reprojection error, each clipped at _SWAP_CLIP_PX."""
    n = used.sum(axis=0)
    clipped = np.minimum(np.where(used, err, 0.0), _SWAP_CLIP_PX).sum(axis=0)
    counted = _SIDED & (n >= MIN_CAMERAS)  # keypoints seen by fewer cameras have no point
    return float((clipped[counted] / n[counted]).mean()) if counted.any() else math.nan


def _mirror_index(cameras: BoolArray) -> npt.NDArray[np.intp]:
    """Keypoint order (..., C, NUM_KEYPOINTS) that exchanges left and right where ``cameras``
    (..., C, 1) is true."""
    return np.where(cameras, MIRRORED, _KEYPOINTS)


def _mirror_all(
    raw: tuple[FloatArray, FloatArray, FloatArray, BoolArray], cameras: BoolArray
) -> tuple[FloatArray, FloatArray, FloatArray, BoolArray]:
    """``raw`` (each (C, NUM_KEYPOINTS, ...)) with the left/right keypoints of ``cameras``
    exchanged (itself when none is swapped)."""
    if not cameras.any():
        return raw
    index, rows = _mirror_index(cameras[:, None]), np.arange(len(cameras))[:, None]
    pts, xy, weights, used = (a[rows, index] for a in raw)
    return pts, xy, weights, used


def triangulate(
    points2d: npt.ArrayLike,
    confidence: npt.ArrayLike,
    rig: CameraRig,
    cameras: Sequence[str],
    *,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    outlier_px: float = DEFAULT_OUTLIER_PX,
) -> Triangulation:
    """Triangulate K keypoints seen by C cameras (method in the module docstring).

    ``points2d`` (C, K, 2) are raw (distorted) pixels, NaN where unseen; ``confidence``
    (C, K) in [0, 1]; ``cameras`` names the rig camera of each row.  A camera sees a
    keypoint when its point is finite and its confidence is positive and at least
    ``min_confidence``.  ``outlier_px=inf`` turns outlier rejection off.
    Raises ValueError on mismatched shapes, RigError on an unknown camera name.
    """
    triangulator = Triangulator(rig, cameras, min_confidence=min_confidence, outlier_px=outlier_px)
    return triangulator(points2d, confidence)
