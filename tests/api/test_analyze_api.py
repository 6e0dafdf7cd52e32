"""POST /api/analyze: one uploaded image, real MediaPipe and YOLO models."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from pose_analyzer.app import create_app
from pose_analyzer.keypoints import KEYPOINT_NAMES, MEDIAPIPE_TO_OURS
from pose_analyzer.settings import PoseSettings

MAX_FRAME_BYTES = 2_000_000


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("analyze_api")
    settings = PoseSettings(
        log_dir=tmp / "logs",
        backend="mediapipe",
        database_url=f"sqlite:///{tmp}/pose.db",
        max_frame_bytes=MAX_FRAME_BYTES,
    )
    with TestClient(create_app(settings)) as c:
        yield c


def analyze(client: TestClient, data: bytes, name: str = "image.jpg", **form: str) -> Any:
    return client.post("/api/analyze", files={"file": (name, data, "image/jpeg")}, data=form)


def test_mediapipe_keypoints_match_mediapipes_expected_landmarks(client: TestClient, test_data: Path) -> None:
    image = (test_data / "images/mediapipe_pose_test_image.jpg").read_bytes()
    expected = json.loads((test_data / "expected/mediapipe_pose_test_image.landmarks.json").read_text())
    response = analyze(client, image, exercise="squat")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["backend"], body["exercise"]) == ("mediapipe", "squat")
    (person,) = body["people"]
    ours = np.array([[x / body["width"], y / body["height"]] for x, y, _ in person["keypoints"]])
    truth = np.array(expected["models"]["full"])[MEDIAPIPE_TO_OURS, :2]
    assert np.abs(ours - truth).max() < 0.03
    assert len(person["keypoints"]) == len(KEYPOINT_NAMES)  # in keypoints.KEYPOINT_NAMES order
    knee = person["angles"]["left_knee"]
    assert knee is not None
    assert 0 < knee < 180


def test_yolo_finds_the_four_people_on_the_bus(client: TestClient, test_data: Path) -> None:
    response = analyze(client, (test_data / "images/bus.jpg").read_bytes(), backend="yolo")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["backend"] == "yolo"
    assert (body["width"], body["height"]) == (810, 1080)
    assert len(body["people"]) == 4
    for person in body["people"]:
        x1, y1, x2, y2 = person["box"]
        assert 0 <= x1 < x2 <= 810
        assert 0 <= y1 < y2 <= 1080
        assert len(person["keypoints"]) == len(MEDIAPIPE_TO_OURS)


def test_the_detector_is_reused_across_requests(client: TestClient, test_data: Path) -> None:
    image = (test_data / "images/mediapipe_pose_test_image.jpg").read_bytes()
    analyzers = client.app_state["resources"].analyzers
    assert analyze(client, image).status_code == 200  # sets the MediaPipe detector up if no test did
    loaded = analyzers.setups
    assert loaded >= 1
    for _ in range(2):
        assert analyze(client, image).status_code == 200
    assert analyzers.setups == loaded


@pytest.mark.parametrize(
    ("payload", "form", "status", "phrase"),
    [
        (b"", {}, 422, "empty"),
        (b"this is plain text, not an image", {}, 415, "JPEG or PNG"),
        ("truncated", {}, 415, "truncated"),
        ("corrupt", {}, 415, "decoded"),
        (b"\xff\xd8\xff" + b"\0" * (MAX_FRAME_BYTES + 10), {}, 413, "limit"),
        ("image", {"exercise": "juggling"}, 422, "biceps_curl"),
        ("image", {"backend": "openpose"}, 422, "mediapipe, yolo"),
    ],
)
def test_bad_uploads_get_a_clear_4xx(
    client: TestClient,
    test_data: Path,
    payload: bytes | str,
    form: dict[str, str],
    status: int,
    phrase: str,
) -> None:
    image = (test_data / "images/mediapipe_pose_test_image.jpg").read_bytes()
    if payload == "truncated":
        payload = image[: len(image) // 2]
    elif payload == "corrupt":
        # JPEG start and end markers around garbage: passes the marker checks, fails decoding.
        payload = image[:3] + bytes(range(256)) * 8 + image[-2:]
    elif payload == "image":
        payload = image
    assert isinstance(payload, bytes)
    response = analyze(client, payload, **form)
    assert response.status_code == status, response.text
    assert phrase in response.json()["error"]["message"]


def test_a_request_without_a_file_is_422(client: TestClient) -> None:
    response = client.post("/api/analyze", data={"exercise": "squat"})
    assert response.status_code == 422
    assert "file" in response.json()["error"]["message"]
