"""One error registry: a domain error reads the same over HTTP and the WebSocket; the catch-all
logs the exception and answers with a generic message and a request id."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from service_kit.errors import install_error_handlers


def _post(client: TestClient, image: bytes, **form: str) -> dict[str, object]:
    response = client.post("/api/analyze", files={"file": ("f.jpg", image, "image/jpeg")}, data=form)
    assert 400 <= response.status_code < 500, response.text
    return {"status": response.status_code, **response.json()}


def test_an_unknown_exercise_has_one_code_and_body_over_http_and_websocket(
    pose_client: TestClient, test_data: Path
) -> None:
    image = (test_data / "images/mediapipe_pose_test_image.jpg").read_bytes()
    http = _post(pose_client, image, exercise="juggling")
    with pose_client.websocket_connect("/ws/streams/errors") as ws:
        ws.send_text(json.dumps({"type": "start", "exercise": "juggling"}))
        message = ws.receive_json()
    assert http["status"] == 422
    assert message["type"] == "error"
    assert message["error"] == http["error"]
    assert message["error"]["code"] == "unknown_exercise"


def test_an_undecodable_image_is_the_same_error_over_http_and_websocket(pose_client: TestClient) -> None:
    garbage = b"\xff\xd8\xff" + bytes(range(256)) * 4 + b"\xff\xd9"
    http = _post(pose_client, garbage)
    with pose_client.websocket_connect("/ws/streams/garbage") as ws:
        ws.send_bytes(garbage)
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert http["status"] == 415
    error = http["error"]
    assert isinstance(error, dict)
    assert error["code"] == "bad_image"
    assert closed.value.code == 1003
    assert closed.value.reason == error["message"]


def test_the_catch_all_logs_the_exception_and_answers_with_a_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret database password in the message")

    with caplog.at_level(logging.ERROR), TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "internal_error"
    assert "secret" not in response.text
    assert "RuntimeError" not in response.text
    request_id = response.headers["x-request-id"]
    assert error["request_id"] == request_id
    assert request_id in error["message"]
    logged = [r for r in caplog.records if getattr(r, "request_id", None) == request_id]
    assert len(logged) == 1
    assert logged[0].exc_info is not None
    assert "secret database password" in str(logged[0].exc_info[1])
