"""Read and write camera rigs: Qualisys ``.qca.txt``, Pose2Sim/anipose TOML, OpenCV YAML/JSON.

Every reader returns a validated :class:`CameraRig` (world to camera, metres, OpenCV axes)
or raises :class:`RigError` with a message a user can act on.  The TOML form (and its
JSON twin :func:`rig_to_dict`, used over REST) is Pose2Sim's ``Calib_*.toml`` layout, one
table per camera::

    [cam01]
    name = "cam01"
    size = [ 1088.0, 1920.0]                          # width, height (px)
    matrix = [ [ fx, 0.0, cx], [ 0.0, fy, cy], [ 0.0, 0.0, 1.0]]
    distortions = [ k1, k2, p1, p2]                   # k3 appended when non-zero
    rotation = [ rx, ry, rz]                          # Rodrigues vector, world to camera
    translation = [ tx, ty, tz]                       # metres, world to camera
    fisheye = false
    rotation_matrix = [ [...], [...], [...]]          # ours: the exact matrix

Pose2Sim and anipose ignore ``rotation_matrix``; we write it so that a rig read back is
bit for bit the rig written (a Rodrigues vector does not round-trip exactly), and when a
file has both we check that they agree.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from pose_analyzer.multiview.opencv_io import read_opencv_text
from pose_analyzer.multiview.rig import Camera, CameraRig, RigError

RigFormat = Literal["qca", "toml", "yaml", "json"]
RIG_FORMATS: tuple[str, ...] = ("qca", "toml", "yaml", "json")
MAX_RIG_TEXT = 1_000_000  # characters; a 64-camera TOML is about 60 kB
# Qualisys stores intrinsics in sub-pixel sensor units: 64 per pixel (Pose2Sim, read_qca).
QCA_SUBPIXELS = 64.0
_ROTATION_AGREEMENT = 1e-6


def read_rig(path: str | Path) -> CameraRig:
    """Read a calibration file, choosing the format from its name (and content when unclear)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise RigError(f"calibration file not found: {p}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise RigError(f"cannot read calibration file {p}: {exc}") from exc
    return parse_rig_text(text, _format_of(p.name, text), default_name=p.name.split(".")[0])


def _format_of(filename: str, text: str) -> RigFormat:
    name = filename.lower()
    if name.endswith(".qca.txt") or text.lstrip().startswith("<"):
        return "qca"
    if name.endswith(".toml"):
        return "toml"
    if name.endswith((".yml", ".yaml")):
        return "yaml"
    if name.endswith(".json"):
        return "json"
    raise RigError(f"unknown calibration format for {filename!r}: use .qca.txt, .toml, .yml/.yaml or .json")


def parse_rig_text(text: str, fmt: str, default_name: str = "camera") -> CameraRig:
    """Parse an uploaded calibration in format ``fmt`` (one of ``RIG_FORMATS``).

    ``json`` is either our JSON form (:func:`rig_to_dict`) or an OpenCV FileStorage JSON;
    ``default_name`` names the camera of a single-camera OpenCV file that names none.
    """
    if len(text) > MAX_RIG_TEXT:
        raise RigError(f"calibration text is too long ({len(text)} characters, at most {MAX_RIG_TEXT})")
    if fmt == "qca":
        return _parse_qca(text)
    if fmt == "toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RigError(f"calibration TOML does not parse: {exc}") from exc
        return rig_from_dict(data)
    if fmt == "json" and '"opencv-matrix"' not in text:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RigError(f"calibration JSON does not parse: {exc}") from exc
        return rig_from_dict(data)
    if fmt in ("yaml", "json"):
        return CameraRig(tuple(read_opencv_text(text, fmt, default_name)))
    raise RigError(f"unknown calibration format {fmt!r}; use one of {', '.join(RIG_FORMATS)}")


# --- Qualisys -------------------------------------------------------------------------


def _natural_key(name: str) -> list[int | str]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _qca_float(tag: ET.Element, key: str, camera: str) -> float:
    raw = tag.get(key)
    try:
        value = float(raw) if raw is not None else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise RigError(f"Qualisys camera {camera!r}: <{tag.tag}> needs a number {key}=, got {raw!r}")
    return value


def _parse_qca(text: str) -> CameraRig:
    """Qualisys .qca.txt to our convention, exactly as Pose2Sim's ``calib_qca_fun`` converts it.

    Intrinsics are in 1/64 px sensor units and the principal point is shifted by the video
    field of view's top-left corner; ``transform`` gives the camera's position (mm) and a
    matrix W with x_qualisys_cam = W (X - position); a rotation by pi about the camera x axis
    turns Qualisys' camera axes (y up, looking along -z) into OpenCV's.  Only video cameras
    (model containing "video" or "none") are kept, in natural name order.
    """
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise RigError(f"Qualisys calibration is not valid XML: {exc}") from exc
    flip = np.diag([1.0, -1.0, -1.0])
    cameras: list[Camera] = []
    for tag in root.findall("cameras/camera"):
        model = (tag.get("model") or "").lower()
        if "video" not in model and "none" not in model:
            continue
        name = tag.get("serial") or ""
        view_rotation = tag.get("viewrotation", "0")
        if view_rotation not in ("0", "0.0"):
            raise RigError(
                f"Qualisys camera {name!r} has viewrotation={view_rotation}; only unrotated views (0) "
                "are supported: calibrate without view rotation or export to TOML from Pose2Sim"
            )
        fov, intr, tr = tag.find("fov_video"), tag.find("intrinsic"), tag.find("transform")
        if fov is None or intr is None or tr is None:
            raise RigError(f"Qualisys camera {name!r} lacks <fov_video>, <intrinsic> or <transform>")
        left, top = _qca_float(fov, "left", name), _qca_float(fov, "top", name)
        size = (
            _qca_float(fov, "right", name) - left + 1,
            _qca_float(fov, "bottom", name) - top + 1,
        )

        def sub(key: str, tag: ET.Element = intr, camera: str = name) -> float:
            return _qca_float(tag, key, camera) / QCA_SUBPIXELS

        matrix = [
            [sub("focalLengthU"), 0.0, sub("centerPointU") - left],
            [0.0, sub("focalLengthV"), sub("centerPointV") - top],
            [0.0, 0.0, 1.0],
        ]
        distortion = [
            sub("radialDistortion1"),
            sub("radialDistortion2"),
            sub("tangentalDistortion1"),
            sub("tangentalDistortion2"),
            sub("radialDistortion3") if intr.get("radialDistortion3") is not None else 0.0,
        ]
        w = np.array([[_qca_float(tr, f"r{i}{j}", name) for j in (1, 2, 3)] for i in (1, 2, 3)])
        position = np.array([_qca_float(tr, k, name) for k in "xyz"]) / 1000.0
        rotation = flip @ w
        cameras.append(Camera(name, size, matrix, distortion, rotation, -rotation @ position))  # type: ignore[arg-type]
    if not cameras:
        raise RigError("the Qualisys calibration has no video camera (<camera model=... video or none>)")
    return CameraRig(tuple(sorted(cameras, key=lambda c: _natural_key(c.name))))


# --- TOML / dict form -------------------------------------------------------------------


def rig_to_dict(rig: CameraRig) -> dict[str, Any]:
    """The TOML form as plain data (JSON-ready): one entry per camera, keyed by its name."""
    out: dict[str, Any] = {}
    for cam in rig.cameras:
        k3 = float(cam.distortion[4])
        out[cam.name] = {
            "name": cam.name,
            "size": [float(cam.image_size[0]), float(cam.image_size[1])],
            "matrix": cam.matrix.tolist(),
            "distortions": cam.distortion[: 5 if k3 != 0.0 else 4].tolist(),
            "rotation": cam.rvec.tolist(),
            "translation": cam.translation.tolist(),
            "fisheye": False,
            "rotation_matrix": cam.rotation.tolist(),
        }
    return out


def rig_from_dict(data: Mapping[str, Any]) -> CameraRig:
    """A rig from the TOML/JSON form; tables without a ``matrix`` (``metadata``) are skipped."""
    if not isinstance(data, Mapping):
        raise RigError("a rig must be an object with one entry per camera")
    cameras = []
    for key, entry in data.items():
        if key == "metadata":
            continue
        if not isinstance(entry, Mapping):
            raise RigError(f"rig entry {key!r} must be a table/object describing one camera")
        cameras.append(_camera_from_entry(str(key), entry))
    return CameraRig(tuple(cameras))


def _camera_from_entry(key: str, entry: Mapping[str, Any]) -> Camera:
    name = entry.get("name", key)
    if not isinstance(name, str):
        raise RigError(f"camera {key!r}: name must be a string")
    missing = [f for f in ("size", "matrix", "distortions", "translation") if f not in entry]
    if "rotation" not in entry and "rotation_matrix" not in entry:
        missing.append("rotation")
    if missing:
        raise RigError(f"camera {name!r}: missing {', '.join(missing)}")
    if entry.get("fisheye", False) is not False:
        raise RigError(f"camera {name!r}: fisheye cameras are not supported (fisheye must be false)")
    rotation = _rotation_of(name, entry)
    return Camera(name, entry["size"], entry["matrix"], entry["distortions"], rotation, entry["translation"])


def _rotation_of(name: str, entry: Mapping[str, Any]) -> Any:
    given = entry.get("rotation")
    from_vector = None
    if given is not None:
        arr = _numbers(given, name, "rotation")
        if arr.shape == (3,):
            from_vector = cv2.Rodrigues(arr)[0]
        elif arr.shape == (3, 3):
            from_vector = arr
        else:
            raise RigError(f"camera {name!r}: rotation must be a Rodrigues vector (3) or a matrix (3x3)")
    if "rotation_matrix" not in entry:
        return from_vector
    matrix = _numbers(entry["rotation_matrix"], name, "rotation_matrix")
    if from_vector is not None and matrix.shape == (3, 3):
        gap = float(np.abs(matrix - from_vector).max())
        if gap > _ROTATION_AGREEMENT:
            raise RigError(
                f"camera {name!r}: rotation and rotation_matrix disagree (by {gap:.2g}); "
                "edit both or delete rotation_matrix"
            )
    return matrix


def _numbers(value: Any, name: str, what: str) -> np.ndarray[Any, np.dtype[np.float64]]:
    try:
        return np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise RigError(f"camera {name!r}: {what} must be numbers") from exc


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # shortest text that reads back to the same double
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[ " + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def rig_to_toml(rig: CameraRig) -> str:
    """The TOML text of a rig (Pose2Sim layout, plus ``rotation_matrix``)."""
    lines: list[str] = []
    for key, entry in rig_to_dict(rig).items():
        lines.append(f"[{key if _BARE_KEY.match(key) else json.dumps(key)}]")
        lines.extend(f"{field} = {_toml_value(value)}" for field, value in entry.items())
        lines.append("")
    lines += ["[metadata]", "adjusted = false", "error = 0.0", ""]
    return "\n".join(lines)


def write_toml(rig: CameraRig, path: str | Path) -> None:
    """Write ``rig`` as TOML to ``path`` (atomically: a reader never sees half a file)."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(rig_to_toml(rig), encoding="utf-8")
    tmp.replace(p)
