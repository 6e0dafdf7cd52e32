"""The browser page and its assets are served by the service itself (no CDN, no build step)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from pose_analyzer.app import create_app
from pose_analyzer.settings import PoseSettings


def test_index_is_html_that_loads_only_local_assets(pose_client: TestClient) -> None:
    response = pose_client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources, "the page references its script and stylesheet"
    assert all(s.startswith("/web/") for s in sources), sources


@pytest.mark.parametrize(
    ("name", "content_type", "marker"),
    [("app.js", "text/javascript", "/ws/streams/"), ("style.css", "text/css", ".overlay")],
)
def test_assets_have_their_content_types(
    pose_client: TestClient, name: str, content_type: str, marker: str
) -> None:
    response = pose_client.get(f"/web/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(content_type)
    assert marker in response.text


@pytest.mark.parametrize("name", ["index.htm", "..%2Fapp.py", "%2E%2E%2Fsettings.py", "missing.js"])
def test_only_listed_assets_are_served(pose_client: TestClient, name: str) -> None:
    assert pose_client.get(f"/web/{name}").status_code == 404


def test_page_skeleton_mirrors_the_keypoint_convention(pose_client: TestClient) -> None:
    from pose_analyzer.keypoints import KEYPOINT_NAMES, SKELETON

    script = pose_client.get("/web/app.js").text
    names = re.search(r"const KEYPOINT_NAMES = \[(.*?)\];", script, re.S)
    bones = re.search(r"const SKELETON = \[(.*?)\];", script, re.S)
    assert names, "app.js defines KEYPOINT_NAMES"
    assert bones, "app.js defines SKELETON"
    assert tuple(re.findall(r'"(\w+)"', names.group(1))) == KEYPOINT_NAMES
    pairs = tuple((int(a), int(b)) for a, b in re.findall(r"\[(\d+), (\d+)\]", bones.group(1)))
    assert pairs == tuple((int(a), int(b)) for a, b in SKELETON)


def test_page_needs_no_api_key(tmp_path: Path) -> None:
    """The page holds no data: it is public, and passes the key the user gives it in its URL."""
    settings = PoseSettings(
        log_dir=tmp_path / "logs",
        backend="mediapipe",
        database_url=f"sqlite:///{tmp_path}/pose.db",
        api_key=SecretStr("page-key"),
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/").status_code == 200
        assert client.get("/web/app.js").status_code == 200
        assert client.get("/api/exercises").status_code == 401
