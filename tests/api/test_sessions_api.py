"""Sessions REST API over a session recorded by streaming a real curl clip through the WebSocket."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from pose_analyzer.app import create_app
from pose_analyzer.settings import PoseSettings
from pose_analyzer.storage import Database, start_session
from tests.api.stream_messages import next_answer
from tests.clips import encoded_frames

WIDTH = 360  # downscaled for speed; MediaPipe still finds the person
STEP = 3  # every third frame of the 30 fps clip


def clip_frames(video: Path) -> list[tuple[float, bytes]]:
    """(capture time s, JPEG) of every STEP-th frame of ``video``, downscaled."""
    return encoded_frames(video, STEP, WIDTH, quality=95)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, test_data: Path) -> Iterator[dict[str, Any]]:
    """A client whose database holds one curl session, with what the stream answered."""
    tmp = tmp_path_factory.mktemp("sessions_api")
    settings = PoseSettings(
        log_dir=tmp / "logs", backend="mediapipe", database_url=f"sqlite:///{tmp}/pose.db"
    )
    frames = clip_frames(test_data / "videos/curl_3reps_starts_midrep.mp4")
    with TestClient(create_app(settings)) as client:
        with client.websocket_connect("/ws/streams/curl") as ws:
            ws.send_text(json.dumps({"type": "start", "exercise": "biceps_curl"}))
            started = ws.receive_json()
            reps: list[dict[str, Any]] = []
            for frame_id, (capture_ts, data) in enumerate(frames):
                ws.send_text(json.dumps({"type": "frame", "frame_id": frame_id, "capture_ts": capture_ts}))
                ws.send_bytes(data)
                assert next_answer(ws, reps)["type"] == "frame"
            ws.send_text(json.dumps({"type": "stop"}))
            stopped = next_answer(ws, reps)
        assert started["type"] == "started"
        assert started["session_id"]
        assert stopped["type"] == "stopped"
        assert [m["rep"] for m in reps] == stopped["reps"]  # each rep announced once, as stored
        yield {"client": client, "session_id": started["session_id"], "stopped": stopped}


def test_the_recorded_session_is_listed_and_readable(recorded: dict[str, Any]) -> None:
    client: TestClient = recorded["client"]
    listed = client.get("/api/sessions").json()
    assert recorded["session_id"] in [s["id"] for s in listed]
    session = client.get(f"/api/sessions/{recorded['session_id']}").json()
    assert session["exercise"] == "biceps_curl"
    (stream,) = session["streams"]
    assert stream["stream_id"] == "curl"
    assert stream["frames_processed"] == recorded["stopped"]["frames_processed"]


def test_pagination_pages_through_sessions_newest_first(recorded: dict[str, Any]) -> None:
    client: TestClient = recorded["client"]
    database: Database = client.app_state["resources"].database
    with database.session() as db:
        newer = start_session(db, exercise="squat")
    first = client.get("/api/sessions", params={"limit": 1}).json()
    second = client.get("/api/sessions", params={"limit": 1, "offset": 1}).json()
    assert [s["id"] for s in first] == [newer]
    assert [s["id"] for s in second] == [recorded["session_id"]]


def test_reps_match_what_the_stream_reported(recorded: dict[str, Any]) -> None:
    client: TestClient = recorded["client"]
    reps = client.get(f"/api/sessions/{recorded['session_id']}/reps").json()
    reported = recorded["stopped"]["reps"]
    assert len(reps) == recorded["stopped"]["rep_count"] == len(reported) > 0
    for stored, live in zip(reps, reported, strict=True):
        assert stored["index"] == live["index"]
        assert stored["score"] == pytest.approx(live["score"])
        assert [f["code"] for f in stored["faults"]] == [f["code"] for f in live["faults"]]
        assert stored["end_s"] > stored["start_s"] >= 0


def test_summary_aggregates_the_reps(recorded: dict[str, Any]) -> None:
    client: TestClient = recorded["client"]
    session_id = recorded["session_id"]
    reps = client.get(f"/api/sessions/{session_id}/reps").json()
    summary = client.get(f"/api/sessions/{session_id}/summary").json()
    assert summary["session"]["id"] == session_id
    (curl,) = summary["exercises"]
    assert curl["exercise"] == "biceps_curl"
    assert curl["reps"] == len(reps)
    assert curl["mean_score"] == pytest.approx(np.mean([r["score"] for r in reps]))
    roms = [r["range_of_motion_deg"] for r in reps]
    assert (curl["min_range_of_motion_deg"], curl["max_range_of_motion_deg"]) == pytest.approx(
        (min(roms), max(roms))
    )


def test_reps_csv_download_has_a_header_and_one_row_per_rep(recorded: dict[str, Any]) -> None:
    client: TestClient = recorded["client"]
    session_id = recorded["session_id"]
    response = client.get(f"/api/sessions/{session_id}/reps.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    reps = client.get(f"/api/sessions/{session_id}/reps").json()
    assert response.text.splitlines()[0].split(",")[:4] == ["stream_id", "track_id", "exercise", "index"]
    assert [int(r["index"]) for r in rows] == [r["index"] for r in reps]
    assert [float(r["score"]) for r in rows] == pytest.approx([r["score"] for r in reps], abs=0.01)


def test_plot_is_a_png_of_the_requested_size(recorded: dict[str, Any]) -> None:
    client: TestClient = recorded["client"]
    url = f"/api/sessions/{recorded['session_id']}/plot.png"
    response = client.get(url, params={"width_px": 800, "height_px": 400, "angle": "left_elbow"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    image = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (400, 800, 3)
    default = cv2.imdecode(np.frombuffer(client.get(url).content, np.uint8), cv2.IMREAD_COLOR)
    assert default.shape == (500, 1200, 3)
    # Not a blank canvas: lines and shaded reps make many distinct colours.
    assert len(np.unique(default.reshape(-1, 3), axis=0)) > 50


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/api/sessions/no-such-session", {}, 404),
        ("/api/sessions/no-such-session/reps", {}, 404),
        ("/api/sessions/no-such-session/summary", {}, 404),
        ("/api/sessions/no-such-session/reps.csv", {}, 404),
        ("/api/sessions/no-such-session/plot.png", {}, 404),
        ("/api/sessions", {"limit": 0}, 422),
        ("/api/sessions", {"limit": "many"}, 422),
        ("/api/sessions", {"offset": -1}, 422),
    ],
)
def test_bad_requests_get_a_clear_4xx(
    recorded: dict[str, Any], path: str, params: dict[str, Any], status: int
) -> None:
    response = recorded["client"].get(path, params=params)
    assert response.status_code == status
    assert response.json()["error"]["message"]


def test_plot_refuses_unknown_angles_and_streams(recorded: dict[str, Any]) -> None:
    client: TestClient = recorded["client"]
    url = f"/api/sessions/{recorded['session_id']}/plot.png"
    bad_angle = client.get(url, params={"angle": "left_wing"})
    assert bad_angle.status_code == 422
    assert "left_elbow" in bad_angle.json()["error"]["message"]
    assert client.get(url, params={"stream": "nope"}).status_code == 404
    assert client.get(url, params={"width_px": 10}).status_code == 422


def test_status_reports_streams_backend_and_database_kind(recorded: dict[str, Any]) -> None:
    status = recorded["client"].get("/api/status").json()
    assert status["active_streams"] == 0
    assert status["backend"]["chosen"] == "mediapipe"
    assert status["database_scheme"] == "sqlite"
    assert status["uptime_s"] > 0
