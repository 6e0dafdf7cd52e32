"""Calibrated cameras: intrinsics, distortion, extrinsics and image size, in one convention.

Conventions (the ones OpenCV, Pose2Sim and anipose use):

- ``rotation`` (3x3) and ``translation`` (metres) map **world to camera**:
  ``x_cam = rotation @ X_world + translation``; the camera centre in the world is
  ``-rotation.T @ translation``.
- Camera axes are OpenCV's: x to the right of the image, y down, z along the optical axis.
- ``matrix`` is the pinhole matrix in pixels ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` of an
  image ``image_size = (width, height)`` pixels; ``distortion`` is OpenCV's
  ``(k1, k2, p1, p2, k3)``.

A :class:`Camera` is checked when it is built, so a rig that exists is usable:
:class:`RigError` says which camera and what is wrong, in words a user can act on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# Orthonormality tolerance: calibration files written with 6 significant digits (ROS,
# many OpenCV YAMLs) have |R R^T - I| up to a few 1e-6; a matrix that is not a rotation
# (a scaled one, a transposed-by-mistake reflection, garbage) is off by far more.
ROTATION_TOLERANCE = 1e-4
MAX_CAMERAS = 64
MAX_IMAGE_SIDE = 32768


class RigError(ValueError):
    """A calibration that cannot be used; the message names the camera and the problem."""


def _array(value: Any, shape: tuple[int, ...], what: str) -> FloatArray:
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise RigError(f"{what} must be numbers of shape {shape}") from exc
    if arr.shape != shape:
        raise RigError(f"{what} must have shape {shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise RigError(f"{what} contains NaN or infinity")
    arr.setflags(write=False)
    return arr


def _distortion(value: Any, what: str) -> FloatArray:
    try:
        arr = np.array(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise RigError(f"{what} must be 4 or 5 numbers (k1, k2, p1, p2[, k3])") from exc
    if arr.size == 4:
        arr = np.concatenate([arr, [0.0]])
    if arr.size != 5:
        raise RigError(
            f"{what} must be 4 or 5 numbers (OpenCV k1, k2, p1, p2[, k3]), got {arr.size}; "
            "rational and thin-prism models are not supported"
        )
    return _array(arr, (5,), what)


@dataclass(frozen=True, eq=False)
class Camera:
    """One calibrated camera (see the module docstring for the conventions)."""

    name: str
    image_size: tuple[int, int]
    matrix: FloatArray
    distortion: FloatArray
    rotation: FloatArray
    translation: FloatArray

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise RigError("every camera needs a non-empty name")
        what = f"camera {self.name!r}"
        object.__setattr__(self, "image_size", _image_size(self.image_size, what))
        object.__setattr__(self, "matrix", _array(self.matrix, (3, 3), f"{what}: matrix"))
        object.__setattr__(self, "distortion", _distortion(self.distortion, f"{what}: distortion"))
        object.__setattr__(self, "rotation", _array(self.rotation, (3, 3), f"{what}: rotation"))
        object.__setattr__(self, "translation", _array(self.translation, (3,), f"{what}: translation"))
        _check_intrinsics(self)
        _check_rotation(self.rotation, what)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Camera):
            return NotImplemented
        return (
            self.name == other.name
            and self.image_size == other.image_size
            and all(
                np.array_equal(getattr(self, f), getattr(other, f))
                for f in ("matrix", "distortion", "rotation", "translation")
            )
        )

    __hash__ = None  # type: ignore[assignment]

    @property
    def projection_matrix(self) -> FloatArray:
        """``matrix @ [rotation | translation]`` (3, 4): world metres to homogeneous pixels, no distortion."""
        return np.asarray(self.matrix @ np.hstack([self.rotation, self.translation[:, None]]))

    @property
    def center(self) -> FloatArray:
        """Camera centre in world coordinates (metres)."""
        return np.asarray(-self.rotation.T @ self.translation)

    @property
    def rvec(self) -> FloatArray:
        """The rotation as a Rodrigues vector (3,), as TOML files and cv2.projectPoints take it."""
        return np.asarray(cv2.Rodrigues(self.rotation)[0].reshape(3), dtype=np.float64)

    def project(self, points3d: npt.ArrayLike) -> FloatArray:
        """Pixel positions (N, 2) of world points (N, 3) in metres, distortion included.

        NaN rows stay NaN.  Points behind the camera are projected as OpenCV does (mirrored);
        callers that care check ``depth``.
        """
        pts = np.asarray(points3d, dtype=np.float64).reshape(-1, 3)
        out = np.full((pts.shape[0], 2), np.nan)
        ok = np.isfinite(pts).all(axis=1)
        if ok.any():
            img, _ = cv2.projectPoints(pts[ok], self.rvec, self.translation, self.matrix, self.distortion)
            out[ok] = img.reshape(-1, 2)
        return out

    def depth(self, points3d: npt.ArrayLike) -> FloatArray:
        """Distance along the optical axis (N,) of world points (N, 3); negative behind the camera."""
        pts = np.asarray(points3d, dtype=np.float64).reshape(-1, 3)
        return np.asarray(pts @ self.rotation[2] + self.translation[2])


def _image_size(value: Any, what: str) -> tuple[int, int]:
    try:
        w, h = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise RigError(f"{what}: image size must be two numbers (width, height) in pixels") from exc
    if not (w.is_integer() and h.is_integer()) or not (0 < w <= MAX_IMAGE_SIDE and 0 < h <= MAX_IMAGE_SIDE):
        raise RigError(
            f"{what}: image size must be two whole numbers of pixels in 1..{MAX_IMAGE_SIDE}, got {value}"
        )
    return int(w), int(h)


def _check_intrinsics(cam: Camera) -> None:
    k = cam.matrix
    what = f"camera {cam.name!r}"
    if k[0, 0] <= 0 or k[1, 1] <= 0:
        raise RigError(f"{what}: focal length must be positive pixels, got fx={k[0, 0]}, fy={k[1, 1]}")
    if k[1, 0] != 0 or k[2, 0] != 0 or k[2, 1] != 0 or k[2, 2] != 1:
        raise RigError(f"{what}: matrix must be [[fx, s, cx], [0, fy, cy], [0, 0, 1]], got {k.tolist()}")


def _check_rotation(r: FloatArray, what: str) -> None:
    err = float(np.abs(r @ r.T - np.eye(3)).max())
    det = float(np.linalg.det(r))
    if err > ROTATION_TOLERANCE or det <= 0:
        raise RigError(
            f"{what}: rotation is not a rotation matrix (|R R^T - I| = {err:.2g}, det = {det:.4g}; "
            "it must be orthonormal with determinant +1)"
        )


@dataclass(frozen=True, eq=True)
class CameraRig:
    """Cameras calibrated in one world frame, in a fixed order; names are unique."""

    cameras: tuple[Camera, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "cameras", tuple(self.cameras))
        _check_rig_level(self)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.cameras)

    def camera(self, name: str) -> Camera:
        """The camera called ``name``; RigError naming the known cameras when there is none."""
        for cam in self.cameras:
            if cam.name == name:
                return cam
        raise RigError(f"no camera {name!r} in the rig (cameras: {', '.join(self.names)})")

    def __len__(self) -> int:
        return len(self.cameras)

    def __iter__(self) -> Iterator[Camera]:
        return iter(self.cameras)

    __hash__ = None  # type: ignore[assignment]


def _check_rig_level(rig: CameraRig) -> None:
    if not rig.cameras:
        raise RigError("a rig needs at least one camera")
    if len(rig.cameras) > MAX_CAMERAS:
        raise RigError(f"a rig holds at most {MAX_CAMERAS} cameras, got {len(rig.cameras)}")
    for cam in rig.cameras:
        if not isinstance(cam, Camera):
            raise RigError(f"rig cameras must be Camera objects, got {type(cam).__name__}")
    seen: set[str] = set()
    for name in rig.names:
        if name in seen:
            raise RigError(f"camera name {name!r} appears twice in the rig")
        seen.add(name)


def validate_rig(rig: CameraRig) -> None:
    """Check every camera and the rig as a whole; raise RigError on the first problem."""
    _check_rig_level(rig)
    for cam in rig.cameras:
        what = f"camera {cam.name!r}"
        _image_size(cam.image_size, what)
        for field, shape in (
            ("matrix", (3, 3)),
            ("rotation", (3, 3)),
            ("translation", (3,)),
            ("distortion", (5,)),
        ):
            _array(getattr(cam, field), shape, f"{what}: {field}")
        _check_intrinsics(cam)
        _check_rotation(cam.rotation, what)
