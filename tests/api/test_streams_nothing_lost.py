"""Nothing lost, nothing misreported: reps committed before they are announced, a failed commit
reported (1011) and recorded, a service stop draining (running streams finish, new ones refused
with 1013) and recording what its grace cut as interrupted (1012), bad capture times
refused as the client's fault (1008).  Real MediaPipe, real SQLite files, real locks."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from pose_analyzer.app import create_app
from pose_analyzer.settings import PoseSettings
from pose_analyzer.shutdown import ShutdownNotice
from tests.api.stream_messages import next_answer
from tests.api.test_streams import camera_frames, metric
from tests.clips import encoded_frames

WIDTH = 360


@pytest.fixture(scope="module")
def squats(test_data: Path) -> list[tuple[float, bytes]]:
    return encoded_frames(test_data / "videos/squat_8reps.mp4", 3, WIDTH)


@pytest.fixture(scope="module")
def frames(test_data: Path) -> list[bytes]:
    return camera_frames(test_data / "multicam/videos/cam01.mp4", 3)


def make_client(db_file: Path, shutdown: ShutdownNotice | None = None, **overrides: Any) -> TestClient:
    settings = PoseSettings(
        log_dir=db_file.parent / "logs",
        backend="mediapipe",
        database_url=f"sqlite:///{db_file}?timeout=0.2",
        **overrides,
    )
    return TestClient(create_app(settings, shutdown=shutdown))


def rows(db_file: Path, sql: str) -> list[tuple[Any, ...]]:
    """Read with a connection of its own, as another process would."""
    with sqlite3.connect(db_file) as connection:
        return connection.execute(sql).fetchall()


def send_frame(
    ws: WebSocketTestSession, capture_ts: float, data: bytes, reps: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Send a frame; its answer (the ``rep`` messages received before it go to ``reps``)."""
    ws.send_text(json.dumps({"type": "frame", "capture_ts": capture_ts}))
    ws.send_bytes(data)
    return next_answer(ws, [] if reps is None else reps)


def test_every_announced_rep_is_already_committed(tmp_path: Path, squats: list[tuple[float, bytes]]) -> None:
    db_file = tmp_path / "pose.db"
    reps: list[dict[str, Any]] = []
    answered: set[int] = set()

    def check_announced(seen: int) -> None:
        """Each ``rep`` message read since ``seen``: committed when it was read, after its frame."""
        for count, message in enumerate(reps[seen:], seen + 1):
            # The flush interval (10 s) has not passed: only commit-before-announce puts it there.
            (stored,) = rows(db_file, "SELECT COUNT(*) FROM reps")[0]
            assert stored >= message["rep_count"] == count
            assert message["frame_id"] in answered  # the frame's answer went out first
            assert 0 < message["commit_ms"] <= message["latency_ms"]

    with make_client(db_file) as client, client.websocket_connect("/ws/streams/squats") as ws:
        ws.send_text(json.dumps({"type": "start", "exercise": "squat"}))
        assert ws.receive_json()["type"] == "started"
        for frame_id, (capture_ts, data) in enumerate(squats, 1):
            seen = len(reps)
            answer = send_frame(ws, capture_ts, data, reps)
            check_announced(seen)
            assert answer["type"] == "frame", answer
            answered.add(frame_id)
            # No answer waits for the database, nor counts or carries a rep not yet announced.
            assert "commit" not in answer["timings_ms"]
            assert answer["rep_count"] == len(reps)
            assert all(p["rep"] is None and p["rep_count"] <= len(reps) for p in answer["people"])
        seen = len(reps)
        ws.send_text(json.dumps({"type": "stop"}))
        stopped = next_answer(ws, reps)  # the last reps are announced before ``stopped``
        check_announced(seen)
        assert stopped["type"] == "stopped"
        assert stopped["rep_count"] == len(reps)
        # One observation per announced rep of arrival -> commit.
        text = client.get("/metrics").text
        assert metric(text, "pose_stream_rep_commit_seconds_count") == len(reps)
    assert len(reps) >= 3  # the clip has 8 squats; enough of them are counted at this size
    assert [m["rep"]["index"] for m in reps] == list(range(1, len(reps) + 1))  # each exactly once
    assert rows(db_file, "SELECT COUNT(*), COUNT(DISTINCT rep_index) FROM reps") == [(len(reps), len(reps))]


def test_a_rep_whose_commit_fails_is_never_announced_and_the_stream_fails(
    tmp_path: Path, squats: list[tuple[float, bytes]]
) -> None:
    db_file = tmp_path / "pose.db"
    reps: list[dict[str, Any]] = []
    with (
        make_client(db_file, stream_commit_attempts=2, stream_commit_backoff_s=0.05) as client,
        client.websocket_connect("/ws/streams/locked") as ws,
    ):
        ws.send_text(json.dumps({"type": "start", "exercise": "squat"}))
        assert ws.receive_json()["type"] == "started"
        frames = iter(squats)
        for capture_ts, data in frames:  # until the first rep is announced
            assert send_frame(ws, capture_ts, data, reps)["type"] == "frame"
            if reps:
                break
        before = len(reps)
        # Another connection holds the database: the next rep's commit fails (the 10 s flush is
        # far off); its frame and the next ones are still answered, without it.
        other = sqlite3.connect(db_file, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        try:
            for capture_ts, data in frames:
                answer = send_frame(ws, capture_ts, data, reps)
                if answer["type"] != "frame":
                    break
                assert answer["rep_count"] == before
            with pytest.raises(WebSocketDisconnect) as closed:
                next_answer(ws, reps)
        finally:
            other.execute("ROLLBACK")
            other.close()
    assert answer["type"] == "error", answer
    assert answer["error"]["code"] == "storage_failed"
    assert (closed.value.code, "could not be saved" in closed.value.reason) == (1011, True)
    assert len(reps) == before == 1  # the rep whose commit failed was never announced


def test_a_locked_database_at_stop_gets_an_error_and_the_stream_recorded_failed(
    tmp_path: Path, frames: list[bytes]
) -> None:
    db_file = tmp_path / "pose.db"
    with (
        make_client(db_file, stream_commit_attempts=3, stream_commit_backoff_s=0.05) as client,
        client.websocket_connect("/ws/streams/locked") as ws,
    ):
        for i, data in enumerate(frames):
            assert send_frame(ws, float(i), data)["type"] == "frame"
        # Another connection holds the database while the client stops.
        other = sqlite3.connect(db_file, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        try:
            ws.send_text(json.dumps({"type": "stop"}))
            error = ws.receive_json()
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
        finally:
            other.execute("ROLLBACK")
            other.close()
        # Once the lock is gone, the writer's next attempt records the failure (the stream is
        # never left "open"); leaving the connection waits for it or records it at once.
    assert error["type"] == "error", error  # never "stopped": nothing was committed
    assert error["error"]["code"] == "storage_failed"
    assert closed.value.code == 1011
    assert "could not be saved" in closed.value.reason
    assert "database is locked" not in closed.value.reason  # no exception text for the client
    ((status, reason),) = rows(db_file, "SELECT status, close_reason FROM streams")
    assert status == "failed"
    assert "could not be saved" in reason
    assert rows(db_file, "SELECT status FROM sessions") == [("failed",)]


def test_a_service_stop_interrupts_open_streams_with_1012(tmp_path: Path, frames: list[bytes]) -> None:
    db_file = tmp_path / "pose.db"
    notice = ShutdownNotice()
    with (
        make_client(db_file, shutdown=notice, drain_grace_s=0) as client,
        client.websocket_connect("/ws/streams/live") as ws,
    ):
        assert send_frame(ws, 0.0, frames[0])["type"] == "frame"
        notice.fire()  # what the server does on SIGTERM; no grace: the stream is cut at once
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert client.get("/readyz").status_code == 503
        assert notice.drained.wait(timeout=30)  # its end committed: the server may stop
        ((status, reason),) = rows(db_file, "SELECT status, close_reason FROM streams")
    assert closed.value.code == 1012
    assert "restarting" in closed.value.reason
    assert (status, "restarting" in reason) == ("interrupted", True)
    assert rows(db_file, "SELECT status FROM sessions") == [("interrupted",)]


def test_a_draining_service_finishes_running_streams_and_refuses_new_ones(
    tmp_path: Path, frames: list[bytes]
) -> None:
    db_file = tmp_path / "pose.db"
    notice = ShutdownNotice()
    with make_client(db_file, shutdown=notice, drain_grace_s=60) as client:
        with client.websocket_connect("/ws/streams/running") as ws:
            assert send_frame(ws, 0.0, frames[0])["type"] == "frame"
            notice.fire()
            assert send_frame(ws, 0.1, frames[1])["type"] == "frame"  # still served
            ready = client.get("/readyz")
            assert (ready.status_code, ready.json()["error"]["message"]) == (503, "draining")
            with (
                client.websocket_connect("/ws/streams/late") as late,
                pytest.raises(WebSocketDisconnect) as refused,
            ):
                late.receive_json()
            assert send_frame(ws, 0.2, frames[2])["type"] == "frame"
            assert not notice.drained.is_set()  # a stream runs: the server must wait
            ws.send_text(json.dumps({"type": "stop"}))
            stopped = ws.receive_json()
        assert notice.drained.wait(timeout=30)
    assert (refused.value.code, "no new streams" in refused.value.reason) == (1013, True)
    assert (stopped["type"], stopped["frames_processed"]) == ("stopped", 3)
    # Only the running stream was recorded (the refused one never got that far), and it completed.
    assert rows(db_file, "SELECT stream_id, status FROM streams") == [("running", "completed")]


def test_recording_off_answers_streams_but_records_nothing(tmp_path: Path, frames: list[bytes]) -> None:
    db_file = tmp_path / "pose.db"
    with (
        make_client(db_file, record_streams=False) as client,
        client.websocket_connect("/ws/streams/live") as ws,
    ):
        ws.send_text(json.dumps({"type": "start"}))
        started = ws.receive_json()
        assert (started["type"], started["session_id"]) == ("started", None)
        for i, data in enumerate(frames[:3]):
            assert send_frame(ws, float(i), data)["type"] == "frame"
        ws.send_text(json.dumps({"type": "stop"}))
        assert ws.receive_json()["frames_processed"] == 3
    assert rows(db_file, "SELECT COUNT(*) FROM streams") == [(0,)]
    assert rows(db_file, "SELECT COUNT(*) FROM sessions") == [(0,)]


@pytest.mark.parametrize(
    ("second_ts", "why"),
    [(math.nan, "finite"), (math.inf, "finite"), (1e19, "finite"), (-1e13, "finite"), (4.0, "backwards")],
)
def test_a_bad_capture_time_is_the_clients_error_1008(
    tmp_path: Path, frames: list[bytes], second_ts: float, why: str
) -> None:
    db_file = tmp_path / "pose.db"
    with make_client(db_file) as client:
        with client.websocket_connect("/ws/streams/clock") as ws:
            assert send_frame(ws, 5.0, frames[0])["type"] == "frame"
            ws.send_text(json.dumps({"type": "frame", "capture_ts": second_ts}))  # NaN, Infinity: JSON5-ish
            ws.send_bytes(frames[1])
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
        text = client.get("/metrics").text
    assert closed.value.code == 1008
    assert why in closed.value.reason
    assert metric(text, "pose_stream_websocket_errors_total", reason="invalid_capture_ts") == 1
    assert metric(text, "pose_stream_websocket_errors_total", reason="internal") == 0
    ((status,),) = rows(db_file, "SELECT status FROM streams")
    assert status == "failed"
