"""Reference reps over REST: uploaded, taken from a stored rep, listed, read, deleted; bad names
and series refused with a 4xx; what it returns is what the CLI's ``--reference`` reads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from pose_analyzer.app import create_app
from pose_analyzer.engine import PoseEngine
from pose_analyzer.exercises.reference import load_reference
from pose_analyzer.settings import PoseSettings
from pose_analyzer.storage import Database, StreamRecorder, start_session
from pose_analyzer.types import Detections, Frame
from tests.unit.pose_analyzer.test_engine import FPS, knee_series, squatter

BASE = "/api/exercises/squat/references"
KNEES = np.linspace(175.0, 90.0, 20)
UPLOAD = {
    "name": "coach-ann",
    "angles": ["left_knee", "right_knee"],
    "series": np.stack([np.r_[KNEES, KNEES[::-1]]] * 2, axis=1).tolist(),
    "tolerance_deg": 12.0,
}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = PoseSettings(
        log_dir=tmp_path / "logs",
        backend="mediapipe",
        database_url=f"sqlite:///{tmp_path}/pose.db",
        references_dir=tmp_path / "references",
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_an_uploaded_reference_is_stored_listed_read_and_deleted(client: TestClient, tmp_path: Path) -> None:
    created = client.post(BASE, json=UPLOAD)
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["exercise"], body["name"], body["samples"]) == ("squat", "coach-ann", 40)
    assert client.get(BASE).json() == ["coach-ann"]
    assert client.get(f"{BASE}/coach-ann").json() == body
    # The stored file is the CLI's --reference format.
    stored = load_reference(tmp_path / "references" / "squat" / "coach-ann.json")
    assert stored.angles == ("left_knee", "right_knee")
    assert stored.tolerance_deg == 12.0
    # A name is taken once.
    assert client.post(BASE, json=UPLOAD).status_code == 409
    assert client.delete(f"{BASE}/coach-ann").status_code == 204
    assert client.get(f"{BASE}/coach-ann").status_code == 404
    assert client.get(BASE).json() == []


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"name": "../../etc/passwd"}, 422),
        ({"name": ".hidden"}, 422),
        ({"angles": ["left_tail", "right_knee"]}, 422),
        ({"angles": ["left_knee"]}, 422),  # two columns for one name
        ({"series": [[1.0, 2.0]]}, 422),  # one sample
        ({"series": [[1.0, 2.0], [3.0]]}, 422),  # ragged
        ({"tolerance_deg": 0}, 422),
        ({"extra": 1}, 422),
    ],
)
def test_bad_uploads_are_refused_with_a_message(
    client: TestClient, tmp_path: Path, change: dict[str, object], status: int
) -> None:
    response = client.post(BASE, json={**UPLOAD, **change})
    assert response.status_code == status
    assert response.json()["error"]["message"]
    assert not list((tmp_path / "references").rglob("*.json"))


def test_paths_outside_the_folder_cannot_be_read_or_deleted(client: TestClient, tmp_path: Path) -> None:
    secret = tmp_path / "references" / "secret.json"
    secret.parent.mkdir(parents=True)
    secret.write_text(json.dumps(UPLOAD))
    for path in (f"{BASE}/..%2Fsecret", f"{BASE}/%2E%2E", "/api/exercises/..%2F..%2Freferences/references"):
        assert client.get(path).status_code in (404, 422)
        assert client.delete(path).status_code in (404, 405, 422)
    assert secret.exists()


def test_an_unknown_exercise_is_a_404(client: TestClient) -> None:
    response = client.post("/api/exercises/plank/references", json=UPLOAD)
    assert response.status_code == 404
    assert "unknown exercise" in response.json()["error"]["message"]


def _record_squats(database: Database) -> str:
    """A session with one stream of three slow squats (4 s each), recorded from the real engine."""
    with database.session() as db:
        session_id = start_session(db, exercise="squat")
    recorder = StreamRecorder.start(database, session_id, "cam", "mediapipe")
    engine = PoseEngine(exercise="squat")
    for i, angle in enumerate(knee_series(3, period_s=4.0)):
        recorder.add_frame(
            engine.analyse(
                Frame(np.zeros((480, 640, 3), np.uint8), i / FPS, i), Detections([squatter(angle)])
            )
        )
    recorder.finish()
    assert engine.rep_count() == 3
    return session_id


def test_a_reference_taken_from_a_stored_rep(client: TestClient) -> None:
    session_id = _record_squats(client.app_state["resources"].database)
    reps = client.get(f"/api/sessions/{session_id}/reps").json()
    second = next(r for r in reps if r["index"] == 2)
    request = {
        "name": "from-rep-2",
        "session_id": session_id,
        "stream_id": "cam",
        "track_id": 0,
        "rep_index": 2,
        "angles": ["left_knee", "right_knee"],
    }
    created = client.post(f"{BASE}/from-rep", json=request)
    assert created.status_code == 201, created.text
    series = np.array(created.json()["reference"]["series"])
    # One mean per second over the rep's span: it goes down and comes back up.
    assert series.shape[0] >= int(second["end_s"] - second["start_s"])
    assert series[:, 0].min() < 140.0 < series[0, 0]
    missing = client.post(f"{BASE}/from-rep", json={**request, "name": "x", "rep_index": 9})
    assert missing.status_code == 404
    unknown = client.post(f"{BASE}/from-rep", json={**request, "name": "y", "session_id": "nope"})
    assert unknown.status_code == 404
