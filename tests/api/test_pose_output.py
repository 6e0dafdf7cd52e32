"""One output model: the same image analysed over REST, the WebSocket and the CLI is described
with the same field names and the same values where the analysis is the same."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from pose_analyzer.cli import app as cli_app
from pose_analyzer.keypoints import NUM_KEYPOINTS


def _rest_person(client: TestClient, image: bytes) -> dict[str, Any]:
    response = client.post("/api/analyze", files={"file": ("f.jpg", image, "image/jpeg")})
    assert response.status_code == 200, response.text
    (person,) = response.json()["people"]
    return person  # type: ignore[no-any-return]


def _ws_person(client: TestClient, image: bytes) -> dict[str, Any]:
    with client.websocket_connect("/ws/streams/output") as ws:
        ws.send_bytes(image)
        answer = ws.receive_json()
        ws.send_text(json.dumps({"type": "stop"}))
    (person,) = answer["people"]
    return person  # type: ignore[no-any-return]


def _cli_person(image_path: Path, out: Path) -> dict[str, Any]:
    result = CliRunner().invoke(
        cli_app, ["analyze", str(image_path), "-o", str(out), "--backend", "mediapipe"]
    )
    assert result.exit_code == 0, result.output
    analysis = json.loads((out / f"{image_path.stem}.analysis.json").read_text())
    (person,) = analysis["frames"][0]["people"]
    return person  # type: ignore[no-any-return]


def test_rest_websocket_and_cli_describe_a_person_with_the_same_fields(
    pose_client: TestClient, test_data: Path, tmp_path: Path
) -> None:
    image_path = test_data / "images" / "mediapipe_pose_test_image.jpg"
    image = image_path.read_bytes()
    rest = _rest_person(pose_client, image)
    ws = _ws_person(pose_client, image)
    cli = _cli_person(image_path, tmp_path)

    assert rest.keys() == ws.keys() == cli.keys()
    assert {"track_id", "box", "keypoints", "angles", "rep"} <= rest.keys()
    for person in (rest, ws, cli):
        assert len(person["keypoints"]) == NUM_KEYPOINTS
        assert all(len(k) == 3 for k in person["keypoints"])
        assert person["angles"].keys() == rest["angles"].keys()
    # REST and the CLI both analyse a still image without smoothing: the same numbers.
    assert cli["keypoints"] == rest["keypoints"]
    assert cli["angles"] == rest["angles"]
