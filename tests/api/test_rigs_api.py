"""Camera rigs over REST: the shared Qualisys calibration uploaded as text, read back in its JSON
form, replaced, listed, deleted; every malformed rig a 4xx naming the camera and the problem."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from pose_analyzer.multiview.calibration_io import read_rig, rig_from_dict, rig_to_toml

BASE = "/api/rigs"


@pytest.fixture
def qca(test_data: Path) -> Path:
    return test_data / "multicam/Calib.qca.txt"


@pytest.fixture
def rig_json(pose_client: TestClient, qca: Path) -> dict[str, Any]:
    """The shared rig's JSON form, as the service returns it."""
    xml = {"content-type": "application/xml"}
    put = pose_client.put(f"{BASE}/demo", content=qca.read_bytes(), headers=xml)
    assert put.status_code == 201, put.text
    rig: dict[str, Any] = put.json()["rig"]
    return rig


def test_a_qualisys_upload_is_stored_read_replaced_listed_and_deleted(
    pose_client: TestClient, qca: Path, rig_json: dict[str, Any]
) -> None:
    body = pose_client.get(f"{BASE}/demo").json()
    assert body["cameras"] == ["cam01", "cam02", "cam03", "cam04"]
    # What is stored is the file's rig, to the last bit of its JSON form.
    assert rig_from_dict(body["rig"]) == read_rig(qca)
    # The JSON form goes back in as it came out: replaced (200), same rig.
    again = pose_client.put(f"{BASE}/demo", json=body["rig"])
    assert again.status_code == 200, again.text
    assert again.json()["rig"] == body["rig"]
    assert again.json()["created_at"] == body["created_at"]
    # The TOML text, as {"format", "text"} and as a typed body.
    toml = rig_to_toml(read_rig(qca))
    assert pose_client.put(f"{BASE}/as-toml", json={"format": "toml", "text": toml}).status_code == 201
    typed = pose_client.put(f"{BASE}/typed", content=toml, headers={"content-type": "application/toml"})
    assert typed.status_code == 201
    assert typed.json()["rig"] == body["rig"]
    plain = pose_client.put(f"{BASE}/plain?format=qca", content=qca.read_bytes())
    assert plain.status_code == 201
    assert [r["name"] for r in pose_client.get(BASE).json()] == ["as-toml", "demo", "plain", "typed"]
    assert pose_client.delete(f"{BASE}/demo").status_code == 204
    missing = pose_client.get(f"{BASE}/demo")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "unknown_rig"
    assert pose_client.delete(f"{BASE}/demo").status_code == 404


def _broken(rig: dict[str, Any], camera: str, **fields: Any) -> dict[str, Any]:
    out = copy.deepcopy(rig)
    out[camera].update(fields)
    out[camera].pop("rotation_matrix", None)
    return out


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"matrix": [[1000.0, 0.0], [0.0, 1000.0]]}, "shape"),
        ({"matrix": [[0.0, 0.0, 540.0], [0.0, 0.0, 960.0], [0.0, 0.0, 1.0]]}, "focal length"),
        ({"rotation": (2.0 * np.eye(3)).tolist()}, "not a rotation"),
        ({"rotation": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]]}, "not a rotation"),
        ({"translation": [1.0, 2.0]}, "shape"),
        ({"size": [0, 1920]}, "image size"),
        ({"distortions": ["a", "b", "c", "d"]}, "distortion"),
    ],
)
def test_a_malformed_camera_is_a_422_naming_it(
    pose_client: TestClient, rig_json: dict[str, Any], change: dict[str, Any], words: str
) -> None:
    response = pose_client.put(f"{BASE}/bad", json=_broken(rig_json, "cam03", **change))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_rig"
    assert "cam03" in error["message"]
    assert words in error["message"]
    assert pose_client.get(f"{BASE}/bad").status_code == 404  # nothing stored


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422),
        ({"json": []}, 422),
        ({"json": {"cam01": {"name": "cam01"}}}, 422),  # a camera missing its fields
        ({"json": {"format": "obj", "text": "v 1 2 3"}}, 422),
        ({"json": {"format": "toml", "text": "[cam = broken"}}, 422),
        ({"content": b"<calibration><cameras>", "headers": {"content-type": "application/xml"}}, 422),
        ({"content": b"\xff\xfe\x00", "headers": {"content-type": "application/toml"}}, 422),
        ({"content": b"something", "headers": {"content-type": "text/plain"}}, 415),
        ({"content": b" " * (1 << 20 + 1), "headers": {"content-type": "application/toml"}}, 413),
    ],
)
def test_bad_bodies_are_clear_4xx(pose_client: TestClient, kwargs: dict[str, Any], status: int) -> None:
    response = pose_client.put(f"{BASE}/bad", **kwargs)
    assert response.status_code == status, response.text
    assert response.json()["error"]["message"]


def test_bad_names_are_refused(pose_client: TestClient, qca: Path) -> None:
    for name in (".hidden", "a" * 65, "semi;colon"):
        response = pose_client.put(f"{BASE}/{name}", content=qca.read_bytes(), params={"format": "qca"})
        assert response.status_code == 422, name
