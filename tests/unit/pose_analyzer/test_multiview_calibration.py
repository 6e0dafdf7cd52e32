"""Calibration readers and writer: Qualisys, Pose2Sim TOML, OpenCV YAML/JSON, bad input.

Tolerance for comparing our reading of ``Calib.qca.txt`` with Pose2Sim's own conversion of
it (``Calib_qualisys.toml``): both derive every value from the same decimal inputs in a
handful of floating-point steps (a division by 64, a 3x3 product, Rodrigues' formula), each
within a few ulps (1e-16 relative), and Pose2Sim printed its doubles in full.  So 1e-12
(relative, and absolute for rotation entries) is a thousand times the arithmetic error and
still a nanometre / nano-pixel: any convention slip (mm vs m, a transposed rotation, a
missing pi flip, the principal-point offset) is off by orders of magnitude more.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest

from pose_analyzer.multiview import (
    Camera,
    CameraRig,
    RigError,
    parse_rig_text,
    read_rig,
    rig_from_dict,
    rig_to_dict,
    rig_to_toml,
    validate_rig,
    write_toml,
)

TOL = 1e-12


@pytest.fixture(scope="module")
def multicam(test_data: Path) -> Path:
    return test_data / "multicam"


@pytest.fixture(scope="module")
def qca_rig(multicam: Path) -> CameraRig:
    return read_rig(multicam / "Calib.qca.txt")


def assert_same_cameras(a: CameraRig, b: CameraRig, tol: float = TOL) -> None:
    assert a.names == b.names
    for ca, cb in zip(a, b, strict=True):
        assert ca.image_size == cb.image_size
        np.testing.assert_allclose(ca.matrix, cb.matrix, rtol=tol, atol=0)
        np.testing.assert_allclose(ca.distortion, cb.distortion, rtol=tol, atol=0)
        np.testing.assert_allclose(ca.rotation, cb.rotation, rtol=0, atol=tol)
        np.testing.assert_allclose(ca.translation, cb.translation, rtol=tol, atol=tol)


def test_qca_parses_to_the_cameras_of_pose2sims_toml(qca_rig: CameraRig, multicam: Path) -> None:
    pose2sim = read_rig(multicam / "Calib_qualisys.toml")
    assert qca_rig.names == ("cam01", "cam02", "cam03", "cam04")
    assert_same_cameras(qca_rig, pose2sim)


def test_qca_camera_centres_are_the_qualisys_positions_in_metres(qca_rig: CameraRig, multicam: Path) -> None:
    root = ET.parse(multicam / "Calib.qca.txt").getroot()
    for tag, cam in zip(root.findall("cameras/camera"), qca_rig, strict=True):
        position_mm = np.array([float(tag.find("transform").get(k)) for k in "xyz"])  # type: ignore[union-attr]
        np.testing.assert_allclose(cam.center, position_mm / 1000.0, atol=1e-12)
        # the optical axis points to the capture volume around the world origin
        to_origin = -cam.center / np.linalg.norm(cam.center)
        assert float(cam.rotation[2] @ to_origin) > 0.8


def test_projection_is_intrinsics_times_extrinsics(qca_rig: CameraRig) -> None:
    cam = qca_rig.camera("cam02")
    point = np.array([[0.1, -0.2, 0.9]])
    h = cam.projection_matrix @ np.append(point[0], 1.0)
    undistorted = h[:2] / h[2]
    projected = cam.project(point)[0]
    # distortion here is small (k1 ~ -7e-4): the two agree within a pixel, not exactly
    assert np.abs(projected - undistorted).max() < 1.0
    no_dist = Camera(cam.name, cam.image_size, cam.matrix, np.zeros(5), cam.rotation, cam.translation)
    np.testing.assert_allclose(no_dist.project(point)[0], undistorted, rtol=1e-12)
    assert np.isnan(cam.project(np.array([[np.nan, 0.0, 0.0]]))).all()


def test_toml_round_trip_is_exact(qca_rig: CameraRig, multicam: Path, tmp_path: Path) -> None:
    for rig in (qca_rig, read_rig(multicam / "Calib_qualisys.toml")):
        path = tmp_path / "rig.toml"
        write_toml(rig, path)
        again = read_rig(path)
        assert again == rig
        assert rig_to_toml(again) == path.read_text()


def test_json_form_round_trip_is_exact_and_has_the_toml_keys(qca_rig: CameraRig) -> None:
    data = json.loads(json.dumps(rig_to_dict(qca_rig)))
    assert rig_from_dict(data) == qca_rig
    assert parse_rig_text(json.dumps(data), "json") == qca_rig
    assert set(data["cam01"]) >= {
        "name",
        "size",
        "matrix",
        "distortions",
        "rotation",
        "translation",
        "fisheye",
    }


def test_k3_survives_and_four_coefficients_mean_k3_zero(qca_rig: CameraRig) -> None:
    cam = qca_rig.camera("cam01")
    with_k3 = Camera(
        "x", cam.image_size, cam.matrix, [0.1, -0.2, 0.001, 0.002, 0.05], cam.rotation, cam.translation
    )
    rig = CameraRig((with_k3,))
    assert rig_to_dict(rig)["x"]["distortions"] == [0.1, -0.2, 0.001, 0.002, 0.05]
    assert parse_rig_text(rig_to_toml(rig), "toml") == rig
    assert cam.distortion[4] == 0.0
    assert len(rig_to_dict(qca_rig)["cam01"]["distortions"]) == 4


def _opencv_text(fmt: str, nodes: dict[str, object]) -> str:
    flags = cv2.FILE_STORAGE_WRITE | cv2.FILE_STORAGE_MEMORY
    if fmt == "json":
        flags |= cv2.FILE_STORAGE_FORMAT_JSON
    fs = cv2.FileStorage(f"calib.{fmt}", flags)
    for key, value in nodes.items():
        fs.write(key, value)
    return str(fs.releaseAndGetString())


@pytest.mark.parametrize("fmt", ["yaml", "json"])
@pytest.mark.parametrize("rotation_as", ["matrix", "rodrigues"])
def test_opencv_single_camera_file(qca_rig: CameraRig, fmt: str, rotation_as: str) -> None:
    cam = qca_rig.camera("cam03")
    rot = cam.rotation if rotation_as == "matrix" else cam.rvec.reshape(3, 1)
    text = _opencv_text(
        fmt,
        {
            "camera_name": "cam03",
            "image_width": cam.image_size[0],
            "image_height": cam.image_size[1],
            "camera_matrix": cam.matrix,
            "dist_coeffs": cam.distortion.reshape(1, 5),
            "R": rot,
            "T": cam.translation.reshape(3, 1),
        },
    )
    rig = parse_rig_text(text, fmt)
    # OpenCV prints doubles with 16 significant digits; Rodrigues adds a few ulps
    assert_same_cameras(rig, CameraRig((cam,)), tol=1e-12)


def test_opencv_multi_camera_file_easymocap_layout(qca_rig: CameraRig, tmp_path: Path) -> None:
    nodes: dict[str, object] = {"names": list(qca_rig.names)}
    for cam in qca_rig:
        nodes |= {
            f"K_{cam.name}": cam.matrix,
            f"dist_{cam.name}": cam.distortion.reshape(1, 5),
            f"Rot_{cam.name}": cam.rotation,
            f"T_{cam.name}": cam.translation.reshape(3, 1),
            f"W_{cam.name}": cam.image_size[0],
            f"H_{cam.name}": cam.image_size[1],
        }
    path = tmp_path / "rig.yml"
    path.write_text(_opencv_text("yaml", nodes))
    assert_same_cameras(read_rig(path), qca_rig)


def _toml_with(qca_rig: CameraRig, **changes: object) -> str:
    """The rig's TOML with camera cam02's fields changed (None deletes a field)."""
    data = rig_to_dict(qca_rig)
    for key, value in changes.items():
        data["cam02"].pop(key, None)
        if value is not None:
            data["cam02"][key] = value
    lines = []
    for key, entry in data.items():
        lines.append(f"[{key}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in entry.items()]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rotation": (2.0 * np.eye(3)).tolist(), "rotation_matrix": None}, "not a rotation matrix"),
        ({"rotation_matrix": np.diag([1.0, 1.0, -1.0]).tolist(), "rotation": None}, "determinant"),
        ({"matrix": [[0.0, 0.0, 540.0], [0.0, 0.0, 960.0], [0.0, 0.0, 1.0]]}, "focal length"),
        ({"matrix": [[1600.0, 0.0, 540.0], [0.0, 1600.0, 960.0]]}, "shape (3, 3)"),
        ({"translation": [0.0, 1.0]}, "shape (3,)"),
        ({"distortions": [0.1, 0.2, 0.3]}, "4 or 5 numbers"),
        ({"size": [1088.0, -5.0]}, "image size"),
        ({"fisheye": True}, "fisheye"),
        ({"rotation": [0.3, 0.0, 0.0]}, "disagree"),
        ({"matrix": "identity"}, "matrix"),
    ],
)
def test_bad_camera_gives_a_clear_rig_error(
    qca_rig: CameraRig, change: dict[str, object], message: str
) -> None:
    text = _toml_with(qca_rig, **change)
    with pytest.raises(RigError, match=re.escape(message)) as info:
        parse_rig_text(text, "toml")
    assert "cam02" in str(info.value)


def test_nan_in_a_matrix_is_refused(qca_rig: CameraRig) -> None:
    cam = qca_rig.camera("cam01")
    bad = cam.matrix.copy()
    bad[0, 2] = np.nan
    with pytest.raises(RigError, match="NaN"):
        Camera("c", cam.image_size, bad, cam.distortion, cam.rotation, cam.translation)


def test_missing_fields_duplicates_and_unknown_cameras(qca_rig: CameraRig) -> None:
    data = rig_to_dict(qca_rig)
    del data["cam01"]["translation"]
    with pytest.raises(RigError, match=r"cam01.*missing translation"):
        rig_from_dict(data)
    with pytest.raises(RigError, match="appears twice"):
        CameraRig((qca_rig.cameras[0], qca_rig.cameras[0]))
    with pytest.raises(RigError, match=r"no camera 'cam09'.*cam01, cam02"):
        qca_rig.camera("cam09")
    with pytest.raises(RigError, match="at least one camera"):
        rig_from_dict({"metadata": {"adjusted": False}})
    validate_rig(qca_rig)


@pytest.mark.parametrize(
    ("text", "fmt", "message"),
    [
        ("[cam01\nname = ", "toml", "TOML does not parse"),
        ("{not json", "json", "JSON does not parse"),
        ("<calibration><cameras>", "qca", "not valid XML"),
        ("camera_matrix: [1, 2", "yaml", "does not parse"),
        (
            "camera_matrix: !!opencv-matrix\n  rows: 3\n  cols: 3\n  dt: d\n  data: [1, 0]\n",
            "yaml",
            "2 values for 3x3",
        ),
        ("image_width: 10\n", "yaml", "camera matrix missing"),
        ("[a]\nname = 1\n", "toml", "name must be a string"),
        ("x = 1", "toml", "must be a table"),
        ("anything", "xlsx", "unknown calibration format"),
    ],
)
def test_malformed_text_gives_a_rig_error(text: str, fmt: str, message: str) -> None:
    with pytest.raises(RigError, match=message):
        parse_rig_text(text, fmt)


def test_qca_edge_cases(multicam: Path, tmp_path: Path) -> None:
    original = (multicam / "Calib.qca.txt").read_text()
    rotated = original.replace('serial="cam02" viewrotation="0"', 'serial="cam02" viewrotation="90"')
    with pytest.raises(RigError, match=r"cam02.*viewrotation=90"):
        parse_rig_text(rotated, "qca")
    markers_only = original.replace('model="none"', 'model="Miqus M3"')
    with pytest.raises(RigError, match="no video camera"):
        parse_rig_text(markers_only, "qca")
    broken = original.replace('focalLengthU="107599.671875"', 'focalLengthU="wide"')
    with pytest.raises(RigError, match=r"cam01.*focalLengthU"):
        parse_rig_text(broken, "qca")
    one_marker_cam = original.replace(
        'model="none" point-count="999999999" serial="cam03"', 'model="Miqus M5" serial="cam03"'
    )
    assert parse_rig_text(one_marker_cam, "qca").names == ("cam01", "cam02", "cam04")
    with pytest.raises(RigError, match="not found"):
        read_rig(tmp_path / "nope.toml")
    odd = tmp_path / "rig.ini"
    odd.write_text("x")
    with pytest.raises(RigError, match="unknown calibration format"):
        read_rig(odd)


def test_hostile_uploads_are_refused_without_blowing_up() -> None:
    """An entity-expansion bomb (a 1 GB expansion of 1 kB) and an oversized text: RigError, at once."""
    entities = '<!ENTITY a0 "lol">' + "".join(f'<!ENTITY a{i} "{f"&a{i - 1};" * 10}">' for i in range(1, 10))
    body = '<calibration><cameras><camera serial="&a9;"/></cameras></calibration>'
    bomb = f'<?xml version="1.0"?><!DOCTYPE c [{entities}]>{body}'
    with pytest.raises(RigError, match="not valid XML"):
        parse_rig_text(bomb, "qca")
    with pytest.raises(RigError, match="too long"):
        parse_rig_text("#" * 1_000_001, "toml")
