"""Exercises REST API: the shipped definitions and their rules."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from pydantic import SecretStr

from pose_analyzer.app import create_app
from pose_analyzer.exercises import available_exercises, load_exercise
from pose_analyzer.settings import PoseSettings


def test_lists_every_shipped_exercise_with_its_rules(pose_client: TestClient) -> None:
    response = pose_client.get("/api/exercises")
    assert response.status_code == 200
    listed = {e["name"]: e for e in response.json()}
    assert sorted(listed) == available_exercises()
    squat = load_exercise("squat")
    assert listed["squat"]["driver"]["angle"] == squat.driver.angle
    assert listed["squat"]["driver"]["rest"] == squat.driver.rest
    assert [r["code"] for r in listed["squat"]["rules"]] == [r.code for r in squat.rules]


def test_gets_one_exercise(pose_client: TestClient) -> None:
    curl = pose_client.get("/api/exercises/biceps_curl").json()
    expected = load_exercise("biceps_curl")
    assert curl["display_name"] == expected.display_name
    assert curl["driver"]["peak"] == expected.driver.peak
    assert len(curl["rules"]) == len(expected.rules)


def test_unknown_exercise_is_404_listing_the_valid_ones(pose_client: TestClient) -> None:
    for name in ("juggling", "squat.yaml", "..squat"):
        response = pose_client.get(f"/api/exercises/{name}")
        assert response.status_code == 404
        error = response.json()["error"]
        assert "squat" in error["message"]
        assert error["details"]["valid"] == available_exercises()


def test_an_api_key_guards_the_rest_routes(tmp_path: Path) -> None:
    settings = PoseSettings(
        log_dir=tmp_path / "logs",
        backend="mediapipe",
        database_url=f"sqlite:///{tmp_path}/pose.db",
        api_key=SecretStr("s3cret"),
    )
    with TestClient(create_app(settings)) as client:
        for path in ("/api/exercises", "/api/sessions", "/api/status"):
            assert client.get(path).status_code == 401
            assert client.get(path, headers={"X-API-Key": "s3cret"}).status_code == 200
