"""A bone-length prior for live 3D: rigid limb segments keep their length where the views allow.

Triangulation places each keypoint on its own; a wrist seen by two cameras that agree on a
wrong point (their rays meet, the third camera was rejected as an outlier) comes out with a
small reprojection error and a forearm 10 cm too long.  ``BoneLengthPrior`` refines the distal
joints of the limbs with what the session has learnt of the person's segment lengths, per
group, after the triangulation and before the temporal smoothing:

1. Lengths.  Each limb segment (upper arm, forearm, thigh, shank; ``CHAINS``) is measured on
   the groups where both of its ends are well triangulated: each from ``min_cameras`` cameras
   or more after outlier rejection, with a mean reprojection error of at most ``good_px``.  Its
   length ``L`` is the median of the last ``window`` such measures; a segment is refined once
   ``min_samples`` are in (before that, and for a segment never well seen, nothing changes).
2. Image noise.  ``sigma_px``, the detector's keypoint noise in pixels, is estimated from the
   session's own residuals: for a keypoint triangulated from ``n`` cameras the sum of its
   squared reprojection errors has expectation ``sigma^2 (2n - 3)`` (``2n`` measures, 3
   unknowns), pooled over the keypoints seen by at least ``min_cameras`` cameras in the last
   ``window`` groups.  (The outlier rejection before it trims the tail, so this is a lower
   estimate: the prior errs towards the images.)
3. Refinement.  Each distal joint ``X`` of a segment with parent ``P`` (elbows and knees given
   the shoulders and hips, then wrists and ankles given the refined elbows and knees) becomes
   the maximum a posteriori point of

       sum_c w_c |f_c (u_c(X) - x_c)|^2 / sigma_px^2  +  (|X - P| - L)^2 / (length_sigma L)^2

   over the cameras ``c`` the triangulation kept for ``X``: ``w_c`` the detection's
   confidence (the triangulation's weight), ``u_c`` the normalised projection, ``x_c`` the
   undistorted detection, ``f_c`` the focal length in pixels.  ``length_sigma`` (3 %) is the
   prior's spread of a keypoint-defined length: keypoints mark the joints from the skin, not
   the joint centres, so the distance between two of them moves by a few percent as the joint
   turns.  One Gauss-Newton step from the triangulated point, joint after joint in ``CHAINS``
   order (iterating to convergence moved the demo clip's joints by up to 13 mm but changed
   no bone's length CV by more than 0.2 points).  Where three cameras pin a joint down it
   hardly moves; along a direction two cameras leave free, the length decides.
4. The reprojection errors reported with the refined points are theirs, over the same cameras.

One prior per person (its lengths are that person's); ``reset`` for a new person.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from pose_analyzer.keypoints import Keypoint as K
from pose_analyzer.multiview.dlt import inverse_spd
from pose_analyzer.multiview.triangulation import MIN_CAMERAS, Triangulation, Triangulator

FloatArray = npt.NDArray[np.float64]

# (parent, child) segments in the order they are refined: a stage's parents are final before it.
CHAINS: tuple[tuple[tuple[K, K], ...], ...] = (
    (
        (K.LEFT_SHOULDER, K.LEFT_ELBOW),
        (K.RIGHT_SHOULDER, K.RIGHT_ELBOW),
        (K.LEFT_HIP, K.LEFT_KNEE),
        (K.RIGHT_HIP, K.RIGHT_KNEE),
    ),
    (
        (K.LEFT_ELBOW, K.LEFT_WRIST),
        (K.RIGHT_ELBOW, K.RIGHT_WRIST),
        (K.LEFT_KNEE, K.LEFT_ANKLE),
        (K.RIGHT_KNEE, K.RIGHT_ANKLE),
    ),
)
_PARENTS = np.array([p for stage in CHAINS for p, _ in stage], dtype=np.intp)
_CHILDREN = np.array([c for stage in CHAINS for _, c in stage], dtype=np.intp)
_N_SEGMENTS = len(_CHILDREN)
_SEGMENTS = list(zip(_PARENTS.tolist(), _CHILDREN.tolist(), strict=True))
_COLUMNS = np.arange(_N_SEGMENTS)
DEFAULT_GOOD_PX = 12.0
DEFAULT_LENGTH_SIGMA = 0.03
DEFAULT_WINDOW = 30
DEFAULT_MIN_SAMPLES = 5
# Before any residual is pooled: half the outlier threshold (a camera 15 px off is an outlier).
DEFAULT_SIGMA_PX = 7.5


class BoneLengthPrior:
    """Learns one person's limb segment lengths and refines each group's limbs with them.

    See the module doc for the method.  ``__call__`` takes a group's ``Triangulation`` (with
    its inputs, as ``Triangulator`` returns it) and the triangulator that made it, and
    returns the refined one.  Use for one person, group after group.
    """

    def __init__(
        self,
        *,
        good_px: float = DEFAULT_GOOD_PX,
        length_sigma: float = DEFAULT_LENGTH_SIGMA,
        window: int = DEFAULT_WINDOW,
        min_samples: int = DEFAULT_MIN_SAMPLES,
        min_cameras: int = 3,
    ) -> None:
        if not (good_px > 0 and length_sigma > 0 and window >= 1 and 1 <= min_samples <= window):
            raise ValueError("good_px and length_sigma must be positive, 1 <= min_samples <= window")
        self.good_px = float(good_px)
        self.length_sigma = float(length_sigma)
        self.min_samples = min_samples
        self.min_cameras = max(int(min_cameras), MIN_CAMERAS)
        # Ring buffers over the last ``window`` groups: segment lengths (NaN where not well
        # seen) and the pooled squared residuals with their degrees of freedom.
        self._lengths = np.full((window, _N_SEGMENTS), np.nan)
        self._residuals = np.zeros((window, 2))
        self._groups = 0

    def reset(self) -> None:
        """Forget the lengths and the noise (another person)."""
        self._lengths[:] = np.nan
        self._residuals[:] = 0.0
        self._groups = 0

    @property
    def sigma_px(self) -> float:
        """The estimated keypoint noise (pixels, one coordinate); a default before any residual."""
        squares, dof = self._residuals.sum(axis=0).tolist()
        return math.sqrt(squares / dof) if dof > 0 and squares > 0 else DEFAULT_SIGMA_PX

    def lengths(self) -> FloatArray:
        """The learnt segment lengths (segments of ``CHAINS`` in order), metres; NaN until known."""
        # The median of each column's finite samples (np.sort puts NaN last); np.nanmedian costs
        # ten times as much on a 30 x 8 array, and this runs for every group.
        samples = np.sort(self._lengths, axis=0)
        count = np.isfinite(samples).sum(axis=0)
        low = samples[np.maximum(count - 1, 0) // 2, _COLUMNS]
        high = samples[count // 2 - (count == 0), _COLUMNS]
        return np.where(count >= self.min_samples, 0.5 * (low + high), np.nan)

    def __call__(self, result: Triangulation, triangulator: Triangulator) -> Triangulation:
        """``result`` with its limbs refined (method in the module doc) and their errors re-measured.

        A result without its inputs, or whose cameras are not the triangulator's, is returned
        as it is.
        """
        if result.pixels is None or result.normalised is None or result.weights is None:
            return result
        if result.used.shape[0] != len(triangulator.cameras):
            return result
        self._learn(result)
        lengths = self.lengths()
        if not np.isfinite(lengths).any():
            return result
        # The image terms of every distal joint at its triangulated point, in one batch: a joint
        # does not move before its own stage, so its Gauss-Newton step needs no other.  The
        # length term adds a rank-one matrix to the image Hessian H: the step inverts H once
        # (Sherman-Morrison), not H plus that matrix per stage.  Joints on the last axis (3, J).
        weights = result.weights[:, _CHILDREN] * result.used[:, _CHILDREN]
        seen = (weights > 0).sum(axis=0) >= MIN_CAMERAS
        inverse, grad = _image_terms(
            result.points[_CHILDREN].T,
            result.normalised[:, _CHILDREN],
            weights,
            seen,
            triangulator,
            self.sigma_px,
        )
        # Eight 3-vectors, two stages: in plain floats (numpy would pay its call overhead ~50 times).
        rows = result.points.tolist()
        steps = zip(
            _PARENTS.tolist(),
            _CHILDREN.tolist(),
            lengths.tolist(),
            inverse.transpose(2, 0, 1).reshape(-1, 9).tolist(),
            grad.T.tolist(),
            strict=True,
        )
        for parent, child, length, inv, g in steps:
            rows[child] = _length_step(rows[child], rows[parent], length, self.length_sigma * length, inv, g)
        points = np.array(rows)
        used = result.used
        err = np.where(used, triangulator.project_errors(points, result.pixels), np.nan)
        n = used.sum(axis=0)
        mean = np.where(used, err, 0.0).sum(axis=0) / np.where(n >= MIN_CAMERAS, n, np.nan)
        return Triangulation(
            points, mean, used, result.swapped, err, result.pixels, result.normalised, result.weights
        )

    def _learn(self, result: Triangulation) -> None:
        """Add this group's well-triangulated segment lengths and its residuals."""
        n = result.used.sum(axis=0)
        pooled = n >= self.min_cameras
        good = (pooled & (result.reprojection_px <= self.good_px)).tolist()
        p = result.points.tolist()
        row = self._groups % self._lengths.shape[0]
        self._lengths[row] = [
            math.dist(p[a], p[b]) if good[a] and good[b] else math.nan for a, b in _SEGMENTS
        ]
        if result.camera_error_px is not None and pooled.any():
            # fmax: the errors of cameras not used (NaN) count 0
            err = np.fmax(result.camera_error_px, 0.0) * pooled
            self._residuals[row] = ((err * err).sum(), (2 * n - 3) @ pooled)
        else:
            self._residuals[row] = 0.0
        self._groups += 1


def _image_terms(
    x: FloatArray,
    observed: FloatArray,
    weights: FloatArray,
    seen: npt.NDArray[np.bool_],
    triangulator: Triangulator,
    sigma_px: float,
) -> tuple[FloatArray, FloatArray]:
    """The inverse Gauss-Newton Hessian (3, 3, J) and the gradient (3, J) of the module doc's
    image term at joints ``x`` (3, J); NaN for a joint not ``seen`` by two cameras.

    ``observed`` (C, J, 2) normalised undistorted detections, ``weights`` (C, J) zero for
    cameras not used.  The residual of camera c is f sqrt(w) (u - x) / sigma; its Jacobian
    the same scale times (1/z) [R0 - u R2; R1 - v R2]; a camera not used has weight 0, so its
    rows are 0.
    """
    rotation = triangulator.extrinsics[:, :, :3]  # (C, 3, 3)
    n_cams, n_joints = weights.shape
    cam = triangulator.camera_coordinates(x)  # (C, 3, J)
    inv_z = 1.0 / cam[:, 2]
    u = cam[:, :2] * inv_z[:, None]  # (C, 2, J)
    scale = np.sqrt(weights) * (triangulator.focal_px[:, None] / sigma_px)  # (C, J)
    res = (scale[:, None] * (u - observed.transpose(0, 2, 1))).reshape(2 * n_cams, 1, n_joints)
    # (C, 2, 3, J): row r of camera c is scale / z (R[c, r] - u_r R[c, 2])
    rows = rotation[:, :2, :, None] - u[:, :, None, :] * rotation[:, None, 2, :, None]
    jac = (rows * (scale * inv_z)[:, None, None, :]).reshape(2 * n_cams, 3, n_joints)
    hess = (jac[:, :, None, :] * jac[:, None, :, :]).sum(axis=0).reshape(9, n_joints)
    # Two cameras or more at distinct places make H invertible; the others get NaN.
    return inverse_spd(hess, seen).reshape(3, 3, n_joints), (jac * res).sum(axis=0)


def _length_step(
    x: list[float],
    parent: list[float],
    length: float,
    length_sd: float,
    inverse: list[float],
    grad: list[float],
) -> list[float]:
    """One Gauss-Newton step from joint ``x`` with the image terms (``inverse`` of their Hessian,
    9 numbers row-major, and ``grad``) and the length prior added; a joint whose step is not
    finite (no known length, an unseen parent, fewer than two cameras) keeps its point."""
    d = [x[0] - parent[0], x[1] - parent[1], x[2] - parent[2]]
    span = max(math.sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]), 1e-9)  # NaN stays NaN
    scale = 1.0 / (span * length_sd)
    j = [d[0] * scale, d[1] * scale, d[2] * scale]  # the length residual's gradient
    r = (span - length) / length_sd
    rhs = [grad[0] + j[0] * r, grad[1] + j[1] * r, grad[2] + j[2] * r]
    # (H + j j')^-1 rhs = A rhs - A j (j' A rhs) / (1 + j' A j), with A = H^-1.
    a = inverse
    a_rhs = [a[3 * i] * rhs[0] + a[3 * i + 1] * rhs[1] + a[3 * i + 2] * rhs[2] for i in range(3)]
    a_j = [a[3 * i] * j[0] + a[3 * i + 1] * j[1] + a[3 * i + 2] * j[2] for i in range(3)]
    k = (j[0] * a_rhs[0] + j[1] * a_rhs[1] + j[2] * a_rhs[2]) / (
        1.0 + j[0] * a_j[0] + j[1] * a_j[1] + j[2] * a_j[2]
    )
    step = [a_rhs[i] - a_j[i] * k for i in range(3)]
    if not all(math.isfinite(v) for v in step):
        return x
    return [x[0] - step[0], x[1] - step[1], x[2] - step[2]]
