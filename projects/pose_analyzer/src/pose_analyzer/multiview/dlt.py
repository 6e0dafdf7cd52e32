"""Weighted linear triangulation (DLT) of many points at once, in closed form, for the hot path.

A camera with extrinsics ``P = [R | t]`` that sees a point at normalised undistorted
coordinates ``(x, y)`` with weight ``w`` gives the two DLT rows ``g = w [x P3 - P1; y P3 - P2]``.
With the homogeneous coordinate fixed to 1 the point solves the normal equations: the first
three rows of ``sum_c g_c^T g_c`` say ``M X = r`` (``M`` its 3x3 block, ``r`` minus its last
column: stored as ``[M | r]``, the "normal matrix" below).  Since

    g^T g = w^2 [(x^2 + y^2) P3 P3^T - x (P3 P1^T + P1 P3^T) - y (P3 P2^T + P2 P3^T) + P1 P1^T + P2 P2^T],

a camera's share is four constant matrices (``dlt_basis``) times four numbers per point
(``dlt_features``), and the normal matrices of any camera subset are one matrix product.

Layout: entries first, points last ((12, N) normal matrices, (3, N) points).  Every whole-array
operation then runs along the points, contiguously; with the entries last, numpy's inner loops
run over 2-4 numbers each and the same arithmetic costs several times as much.

The 3x3 systems are solved by the adjugate (``solve_normal``, ``inverse_spd``):
``np.linalg.solve`` and ``inv`` call LAPACK once per matrix, through OpenBLAS: 10-130 us for
the 8-231 matrices of one group on an idle core, and milliseconds (2.8 ms per ``inv`` of 8
matrices, measured in the bone-length prior under cProfile) when the OpenBLAS threads wait
for cores the pose model holds.  The adjugate's entries are sums of two products, each to a
few ulps; its forward error is of the order of ``cond(M)`` times the rounding unit, as LU's
(test_multiview_triangulation compares the points with the SVD's at 1e-9 m).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

MIN_CAMERAS = 2
# Row-major indices into a 3x3 matrix (entry (i, j) at 3 i + j) of the four entries of every
# cofactor C_ij = M[i+1, j+1] M[i+2, j+2] - M[i+1, j+2] M[i+2, j+1] (indices mod 3).
_I, _J = np.divmod(np.arange(9), 3)
_COFACTOR_TAKE = np.stack(
    [3 * ((_I + a) % 3) + (_J + b) % 3 for a, b in ((1, 1), (2, 2), (1, 2), (2, 1))]
)  # (4, 9)
# Below this ratio of the determinant to the product of the diagonal (at most 1 for a symmetric
# positive semi-definite matrix, by Hadamard's inequality: the determinant of the matrix scaled
# to a unit diagonal) it counts as singular: for one camera that is rounding, for two cameras
# rays within ~1e-6 rad of each other.
SINGULAR_RATIO = 1e-12


def cofactors(m: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Cofactors (9, ...) and determinants (...) of 3x3 matrices given as entries (9, ...),
    row-major.  The inverse is the transposed cofactor matrix over the determinant."""
    e = m[_COFACTOR_TAKE]  # (4, 9, ...)
    cof = e[0] * e[1] - e[2] * e[3]
    return cof, (m[:3] * cof[:3]).sum(axis=0)


# The same entries taken from a normal matrix [M | r] (12 entries, 3 rows of 4).
_NORMAL_TAKE = _COFACTOR_TAKE // 3 * 4 + _COFACTOR_TAKE % 3


def _nonsingular(m: FloatArray, det: FloatArray, valid: BoolArray) -> FloatArray:
    """``det`` where ``valid`` and the symmetric semi-definite ``m`` is not singular, NaN elsewhere:
    dividing by it gives NaN there, without a warning."""
    return np.where(valid & (det > SINGULAR_RATIO * (m[0] * m[4] * m[8])), det, np.nan)


def inverse_spd(m: FloatArray, valid: BoolArray) -> FloatArray:
    """Inverses (9, ...) of symmetric positive semi-definite 3x3 matrices ``m`` (9, ...);
    NaN where not ``valid`` or singular."""
    cof, det = cofactors(m)
    return cof / _nonsingular(m, det, valid)  # symmetric: the cofactor matrix is its transpose


def dlt_basis(extrinsics: FloatArray) -> FloatArray:
    """(12, C * 4): column ``4 c + f`` is camera c's constant matrix for feature f (module doc),
    ``[M | r]`` flattened (three rows of four)."""
    p1, p2, p3 = extrinsics[:, 0], extrinsics[:, 1], extrinsics[:, 2]

    def outer(a: FloatArray, b: FloatArray) -> FloatArray:
        return np.asarray(a[:, :3, None] * b[:, None, :] + b[:, :3, None] * a[:, None, :], dtype=np.float64)

    parts = [0.5 * outer(p3, p3), -outer(p3, p1), -outer(p3, p2), 0.5 * (outer(p1, p1) + outer(p2, p2))]
    basis = np.stack(parts, axis=1).reshape(-1, 3, 4)
    basis[..., 3] *= -1.0  # r = minus the last column of g^T g
    return np.ascontiguousarray(basis.reshape(-1, 12).T)


def dlt_features(xy: FloatArray, weights: FloatArray) -> FloatArray:
    """(C * 4, N): per camera ``[w^2 (x^2 + y^2), w^2 x, w^2 y, w^2]`` of every point.

    ``xy`` (C, N, 2) normalised undistorted coordinates (anything finite where the weight is
    0), ``weights`` (C, N).  ``dlt_basis(extrinsics) @ features`` are the normal matrices.
    """
    x, y = xy[..., 0], xy[..., 1]
    w2 = weights * weights
    wx, wy = w2 * x, w2 * y
    return np.asarray(np.stack([wx * x + wy * y, wx, wy, w2], axis=1).reshape(-1, x.shape[1]))


def solve_normal(normal: FloatArray, valid: BoolArray) -> FloatArray:
    """Points (3, N) from normal matrices [M | r] (12, N); NaN where not ``valid`` or singular
    (all cameras on one ray).  By the adjugate, with the entries read in place."""
    e = normal[_NORMAL_TAKE]  # (4, 9, N)
    cof = e[0] * e[1] - e[2] * e[3]
    det = (normal[:3] * cof[:3]).sum(axis=0)
    ok = valid & (det > SINGULAR_RATIO * (normal[0] * normal[5] * normal[10]))
    return np.asarray((cof.reshape(3, 3, -1) * normal[3::4]).sum(axis=1) / np.where(ok, det, np.nan))


def solve_dlt(extrinsics: FloatArray, xy: FloatArray, weights: FloatArray) -> FloatArray:
    """Weighted linear triangulation, batched over points.

    ``extrinsics`` (C, 3, 4) ``[R | t]``, ``xy`` (C, N, 2) normalised undistorted coordinates
    (anything finite where the weight is 0), ``weights`` (C, N).  Returns (N, 3); a point
    whose system is singular (fewer than two cameras, or all on one ray) is NaN.
    """
    valid = (weights > 0).sum(axis=0) >= MIN_CAMERAS
    return solve_normal(dlt_basis(extrinsics) @ dlt_features(xy, weights), valid).T
