"""OpenCV FileStorage calibrations (YAML or JSON), read with cv2.FileStorage.

Two layouts are understood:

- one camera per file (OpenCV's ``calibrateCamera`` samples, ROS-like files):
  ``camera_matrix`` (or ``K``), ``dist_coeffs`` (or ``distortion_coefficients``, ``D``),
  ``R`` (3x3 matrix or 3 Rodrigues values; also ``rvec``/``rotation``), ``T`` (or
  ``tvec``/``translation``), ``image_width`` + ``image_height`` (or ``image_size``),
  optional ``camera_name``;
- several cameras in one file, EasyMocap's way: a ``names`` list, then per name ``K_<name>``,
  ``dist_<name>``, ``R_<name>`` (Rodrigues) or ``Rot_<name>`` (matrix), ``T_<name>``, and
  ``W_<name>``/``H_<name>`` for the image size (without them the size is twice the principal
  point, as Pose2Sim assumes).

Translations are taken as metres: calibrate with the board's square size in metres.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from pose_analyzer.multiview.rig import Camera, RigError

_MATRIX_KEYS = ("camera_matrix", "K")
_DIST_KEYS = ("dist_coeffs", "distortion_coefficients", "D")
_ROT_KEYS = ("R", "rvec", "rotation")
_TRANS_KEYS = ("T", "tvec", "translation")


def _open(text: str, fmt: str) -> Any:
    if fmt == "yaml" and not text.lstrip().startswith("%YAML"):
        text = "%YAML:1.0\n" + text  # OpenCV tells YAML from JSON/XML by this header
    try:
        fs = cv2.FileStorage(text, cv2.FILE_STORAGE_READ | cv2.FILE_STORAGE_MEMORY)
    except (cv2.error, SystemError) as exc:
        raise RigError(f"OpenCV {fmt.upper()} calibration does not parse: {str(exc).strip()[-200:]}") from exc
    if not fs.isOpened() or not fs.root().isMap():
        raise RigError(f"OpenCV {fmt.upper()} calibration must be a map of named entries")
    return fs


def _values(node: Any, what: str) -> np.ndarray[Any, np.dtype[np.float64]]:
    """A node as float64: an opencv-matrix (rows x cols), a (nested) sequence, or a number."""
    if node.isMap():
        data, rows, cols = node.getNode("data"), node.getNode("rows"), node.getNode("cols")
        if data.empty() or rows.empty() or cols.empty():
            raise RigError(f"{what} must be an opencv-matrix (rows, cols, data) or a list of numbers")
        flat = _values(data, what)
        r, c = int(rows.real()), int(cols.real())
        if flat.size != r * c:
            raise RigError(f"{what}: opencv-matrix has {flat.size} values for {r}x{c}")
        return flat.reshape(r, c)
    if node.isSeq():
        return np.array([_values(node.at(i), what) for i in range(node.size())], dtype=np.float64)
    if node.isInt() or node.isReal():
        return np.array(node.real(), dtype=np.float64)
    raise RigError(f"{what} must be numbers")


def _first(fs: Any, keys: tuple[str, ...], what: str, required: bool = True) -> Any:
    for key in keys:
        node = fs.getNode(key)
        if not node.empty():
            return _values(node, f"{what} ({key})")
    if required:
        raise RigError(f"{what} missing: expected one of {', '.join(keys)}")
    return None


def _rotation(value: np.ndarray[Any, np.dtype[np.float64]], what: str) -> Any:
    if value.size == 3:
        return cv2.Rodrigues(value.reshape(3))[0]
    if value.size == 9:
        return value.reshape(3, 3)
    raise RigError(f"{what}: rotation must be 3 Rodrigues values or a 3x3 matrix, got {value.size} values")


def _size(
    fs: Any, w_key: str, h_key: str, matrix: Any, what: str, single: bool = False
) -> tuple[float, float]:
    """Image size from the width/height entries (or ``image_size``), else twice the principal point."""
    w, h = fs.getNode(w_key), fs.getNode(h_key)
    if not w.empty() and not h.empty():
        return float(_values(w, what)), float(_values(h, what))
    if single:
        size = fs.getNode("image_size")
        if not size.empty():
            vals = _values(size, "image_size").reshape(-1)
            if vals.size == 2:
                return float(vals[0]), float(vals[1])
    m = np.asarray(matrix, dtype=np.float64).reshape(-1)
    if m.size != 9:
        raise RigError(f"{what}: camera matrix must have 9 values")
    return float(round(2 * m[2])), float(round(2 * m[5]))


def read_opencv_text(text: str, fmt: str, default_name: str) -> list[Camera]:
    """Cameras of an OpenCV YAML/JSON calibration text (see the module docstring)."""
    fs = _open(text, fmt)
    names = fs.getNode("names")
    if names.empty():
        name_node = fs.getNode("camera_name")
        name = name_node.string() if not name_node.empty() and name_node.isString() else default_name
        matrix = _first(fs, _MATRIX_KEYS, "camera matrix")
        dist = _first(fs, _DIST_KEYS, "distortion coefficients")
        rotation = _rotation(_first(fs, _ROT_KEYS, "rotation"), f"camera {name!r}")
        translation = _first(fs, _TRANS_KEYS, "translation").reshape(-1)
        size = _size(fs, "image_width", "image_height", matrix, f"camera {name!r}", single=True)
        return [Camera(name, size, matrix, dist.reshape(-1), rotation, translation)]  # type: ignore[arg-type]
    if not names.isSeq() or names.size() == 0:
        raise RigError("names must be a non-empty list of camera names")
    cameras = []
    for i in range(names.size()):
        node = names.at(i)
        name = node.string() if node.isString() else str(int(node.real()))
        what = f"camera {name!r}"
        matrix = _first(fs, (f"K_{name}",), f"{what}: camera matrix")
        dist = _first(fs, (f"dist_{name}", f"D_{name}"), f"{what}: distortion")
        rot = _first(fs, (f"Rot_{name}", f"R_{name}"), f"{what}: rotation")
        translation = _first(fs, (f"T_{name}",), f"{what}: translation").reshape(-1)
        size = _size(fs, f"W_{name}", f"H_{name}", matrix, what)
        cameras.append(Camera(name, size, matrix, dist.reshape(-1), _rotation(rot, what), translation))  # type: ignore[arg-type]
    return cameras
