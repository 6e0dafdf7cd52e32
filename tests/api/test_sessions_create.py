"""Sessions opened for several cameras (``POST /api/sessions``), joined by the stream URL's ?session_id=."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.test_streams import make_client


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with make_client(tmp_path) as client:
        yield client


def test_a_session_is_opened_empty_and_bad_bodies_get_a_4xx(client: TestClient) -> None:
    created = client.post("/api/sessions", json={"exercise": "squat", "meta": {"gym": "north"}})
    assert created.status_code == 201
    body = created.json()
    assert (body["status"], body["exercise"], body["meta"], body["streams"]) == (
        "open",
        "squat",
        {"gym": "north"},
        [],
    )
    assert client.get(f"/api/sessions/{body['id']}").json()["id"] == body["id"]
    for bad in ({"unknown": 1}, {"exercise": "x" * 65}, {"meta": {str(i): i for i in range(33)}}, [1]):
        answer = client.post("/api/sessions", json=bad)
        assert answer.status_code == 422, bad
        assert "error" in answer.json()


def test_the_url_session_and_start_session_must_agree(client: TestClient) -> None:
    first = client.post("/api/sessions", json={}).json()["id"]
    other = client.post("/api/sessions", json={}).json()["id"]
    with client.websocket_connect(f"/ws/streams/cam?session_id={first}") as ws:
        ws.send_json({"type": "start", "session_id": other})
        error = ws.receive_json()
        assert error["type"] == "error"
        assert error["error"]["code"] == "session_mismatch"
        ws.send_json({"type": "start"})  # the stream stayed open: the URL's session is used
        started = ws.receive_json()
        assert (started["type"], started["session_id"], started["rep_count"]) == ("started", first, 0)
        ws.send_json({"type": "stop"})
    with client.websocket_connect("/ws/streams/cam?session_id=no-such-session") as ws:
        ws.send_json({"type": "start"})
        assert ws.receive_json()["error"]["code"] == "unknown_session"
    session = client.get(f"/api/sessions/{first}").json()
    assert [s["stream_id"] for s in session["streams"]] == ["cam"]
