"""The live stream WebSocket through the app factory: real camera frames, real MediaPipe."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from pose_analyzer.app import create_app
from pose_analyzer.settings import PoseSettings
from pose_analyzer.storage import Database, list_sessions

WIDTH = 360  # downscaled for speed; MediaPipe still finds the person


def camera_frames(video: Path, count: int, step: int = 3) -> list[bytes]:
    """``count`` frames of ``video`` (every ``step``-th), downscaled and re-encoded as JPEG."""
    capture = cv2.VideoCapture(str(video))
    frames: list[bytes] = []
    index = 0
    while len(frames) < count:
        ok, image = capture.read()
        if not ok:
            break
        if index % step == 0:
            h, w = image.shape[:2]
            image = cv2.resize(image, (WIDTH, round(h * WIDTH / w)), interpolation=cv2.INTER_AREA)
            frames.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())
        index += 1
    capture.release()
    assert len(frames) == count, f"{video} has fewer than {count} frames"
    return frames


@pytest.fixture(scope="module")
def cameras(test_data: Path) -> dict[str, list[bytes]]:
    return {f"cam0{i}": camera_frames(test_data / f"multicam/videos/cam0{i}.mp4", 8) for i in range(1, 5)}


def make_client(tmp_path: Path, **overrides: Any) -> TestClient:
    settings = PoseSettings(
        log_dir=tmp_path / "logs",
        backend="mediapipe",
        database_url=f"sqlite:///{tmp_path}/pose.db",
        **overrides,
    )
    return TestClient(create_app(settings))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with make_client(tmp_path) as c:
        yield c


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text output (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
        if m and ",".join(sorted((m.group(1) or "").split(","))) == wanted:
            return float(m.group(2))
    return 0.0


def database(client: TestClient) -> Database:
    """The app's database, from its lifespan state."""
    db: Database = client.app_state["resources"].database
    return db


def wait_for_no_streams(client: TestClient) -> None:
    """The server notices a client's disconnect a moment after the client leaves; wait for it."""
    for _ in range(200):
        if metric(client.get("/metrics").text, "pose_stream_active_streams") == 0:
            return
        time.sleep(0.05)
    raise AssertionError("streams still open on the server")


def stream_together(
    client: TestClient,
    cameras: dict[str, list[bytes]],
    frame_s: float | None = None,
    starts: dict[str, dict[str, Any]] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Stream each camera over its own WebSocket, all starting at once; one answer per frame.

    With ``frame_s`` each frame goes after a header giving it that capture period; with
    ``starts`` a camera sends its start message (and hears ``started``) first, and stops (and
    hears ``stopped``) last.
    """
    answers: dict[str, list[dict[str, Any]]] = {}
    failures: list[BaseException] = []
    barrier = threading.Barrier(len(cameras))

    def stream(name: str, frames: list[bytes]) -> None:
        try:
            with client.websocket_connect(f"/ws/streams/{name}") as ws:
                if starts is not None:
                    ws.send_text(json.dumps(starts[name]))
                    started = ws.receive_json()
                    assert started["type"] == "started", started
                barrier.wait(timeout=30)
                got = []
                for frame_id, frame in enumerate(frames, start=1):
                    if frame_s is not None:
                        header = {"type": "frame", "frame_id": frame_id, "capture_ts": frame_id * frame_s}
                        ws.send_text(json.dumps(header))
                    ws.send_bytes(frame)
                    got.append(ws.receive_json())
                if starts is not None:
                    ws.send_text(json.dumps({"type": "stop"}))
                    while (message := ws.receive_json())["type"] != "stopped":
                        assert message["type"] != "error", message
                answers[name] = got
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=stream, args=item) for item in cameras.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures, failures
    return answers


def test_four_concurrent_streams_get_answers_with_people(
    client: TestClient, cameras: dict[str, list[bytes]]
) -> None:
    answers = stream_together(client, cameras)
    assert sorted(answers) == sorted(cameras)
    for name, got in answers.items():
        assert all(a["type"] == "frame" for a in got)
        assert all(a["stream_id"] == name for a in got)
        assert [a["frame_id"] for a in got] == list(range(1, len(got) + 1))
        with_people = [a for a in got if a["people"]]
        assert len(with_people) >= len(got) // 2, f"{name}: people in {len(with_people)}/{len(got)}"
        person = with_people[-1]["people"][0]
        assert len(person["keypoints"]) >= 17
        assert any(v is not None for v in person["angles"].values())
        assert all(a["dropped"] == 0 for a in got)  # each frame waited for its answer


def test_corrupt_jpeg_closes_only_its_stream(client: TestClient, cameras: dict[str, list[bytes]]) -> None:
    good, bad = cameras["cam01"], cameras["cam02"][0]
    with client.websocket_connect("/ws/streams/good") as healthy:
        healthy.send_bytes(good[0])
        assert healthy.receive_json()["type"] == "frame"
        with client.websocket_connect("/ws/streams/broken") as broken:
            broken.send_bytes(bad[: len(bad) // 2])  # a JPEG cut in half
            with pytest.raises(WebSocketDisconnect) as closed:
                broken.receive_json()
        assert closed.value.code == 1003
        assert "truncated JPEG" in closed.value.reason
        with client.websocket_connect("/ws/streams/text-as-binary") as other:
            other.send_bytes(b"this is not an image")
            with pytest.raises(WebSocketDisconnect) as closed:
                other.receive_json()
        assert closed.value.code == 1003
        assert "JPEG or PNG" in closed.value.reason
        for frame in good[1:3]:
            healthy.send_bytes(frame)
            answer = healthy.receive_json()
            assert answer["type"] == "frame"
            assert answer["people"]
    wait_for_no_streams(client)
    with database(client).session() as db:
        rows = {x.streams[0].stream_id: x.streams[0] for x in list_sessions(db) if x.streams}
    assert rows["broken"].status == "failed"
    assert "truncated JPEG" in (rows["broken"].close_reason or "")
    assert (rows["good"].status, rows["good"].frames_processed) == ("completed", 3)
    text = client.get("/metrics").text
    assert metric(text, "pose_stream_websocket_errors_total", reason="bad_image") == 2


def test_oversize_frame_closes_with_1009(tmp_path: Path, cameras: dict[str, list[bytes]]) -> None:
    frame = cameras["cam01"][0]
    with make_client(tmp_path, max_frame_bytes=len(frame) - 1) as client:
        with client.websocket_connect("/ws/streams/big") as ws:
            ws.send_bytes(frame)
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
        assert closed.value.code == 1009
        assert str(len(frame)) in closed.value.reason
        text = client.get("/metrics").text
        assert metric(text, "pose_stream_websocket_errors_total", reason="frame_too_large") == 1


def test_bad_text_messages_get_errors_and_the_stream_goes_on(
    client: TestClient, cameras: dict[str, list[bytes]]
) -> None:
    with client.websocket_connect("/ws/streams/chatty") as ws:
        ws.send_text("{not json")
        message = ws.receive_json()
        assert (message["type"], message["error"]["code"]) == ("error", "invalid_json")
        ws.send_text(json.dumps({"type": "dance"}))
        assert ws.receive_json()["error"]["code"] == "invalid_message"
        ws.send_text(json.dumps({"type": "start", "exercise": "juggling"}))
        error = ws.receive_json()["error"]
        assert error["code"] == "unknown_exercise"
        assert "biceps_curl" in error["details"]["valid"]
        assert "biceps_curl" in error["message"]
        ws.send_text(json.dumps({"type": "start", "exercise": "squat", "person_of_interest": 0}))
        started = ws.receive_json()
        assert (started["type"], started["exercise"], started["backend"]) == ("started", "squat", "mediapipe")
        ws.send_text(json.dumps({"type": "start"}))
        assert ws.receive_json()["error"]["code"] == "already_started"
        ws.send_text(json.dumps({"type": "frame", "frame_id": 42, "capture_ts": 1000.5}))
        ws.send_bytes(cameras["cam03"][0])
        answer = ws.receive_json()
        assert (answer["type"], answer["frame_id"], answer["capture_ts"]) == ("frame", 42, 1000.5)
        ws.send_text(json.dumps({"type": "stop"}))
        stopped = ws.receive_json()
        assert stopped["type"] == "stopped"
        assert (stopped["frames_received"], stopped["frames_processed"], stopped["frames_dropped"]) == (
            1,
            1,
            0,
        )
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 1000
    text = client.get("/metrics").text
    for reason in ("invalid_json", "invalid_message", "unknown_exercise", "already_started"):
        assert metric(text, "pose_stream_websocket_errors_total", reason=reason) == 1, reason


def test_api_key_is_required_when_set(tmp_path: Path, cameras: dict[str, list[bytes]]) -> None:
    with make_client(tmp_path, api_key="s3cret") as client:
        with (
            client.websocket_connect("/ws/streams/nokey") as ws,
            pytest.raises(WebSocketDisconnect) as closed,
        ):
            ws.receive_json()
        assert closed.value.code == 1008
        assert "API key" in closed.value.reason
        with (
            client.websocket_connect("/ws/streams/wrongkey?api_key=nope") as ws,
            pytest.raises(WebSocketDisconnect) as closed,
        ):
            ws.receive_json()
        assert closed.value.code == 1008
        with client.websocket_connect("/ws/streams/keyed", headers={"X-API-Key": "s3cret"}) as ws:
            ws.send_bytes(cameras["cam01"][0])
            assert ws.receive_json()["type"] == "frame"
        text = client.get("/metrics").text
        assert metric(text, "pose_stream_websocket_errors_total", reason="unauthorized") == 2


def test_stream_limit_and_busy_stream_ids(tmp_path: Path, cameras: dict[str, list[bytes]]) -> None:
    with make_client(tmp_path, max_streams=1) as client:
        with client.websocket_connect("/ws/streams/first") as first:
            first.send_bytes(cameras["cam01"][0])
            assert first.receive_json()["type"] == "frame"
            for path, reason in (
                ("/ws/streams/first", "already streaming"),
                ("/ws/streams/second", "too many"),
            ):
                with client.websocket_connect(path) as ws, pytest.raises(WebSocketDisconnect) as closed:
                    ws.receive_json()
                assert closed.value.code == 1008
                assert reason in closed.value.reason
            first.send_bytes(cameras["cam01"][1])
            assert first.receive_json()["type"] == "frame"
        # Once the first stream has gone, its slot is free again.
        wait_for_no_streams(client)
        with client.websocket_connect("/ws/streams/second") as ws:
            ws.send_bytes(cameras["cam02"][0])
            assert ws.receive_json()["type"] == "frame"


def test_latest_frame_wins_when_frames_come_faster_than_analysis(
    client: TestClient, cameras: dict[str, list[bytes]]
) -> None:
    frames = cameras["cam04"] * 3
    with client.websocket_connect("/ws/streams/burst") as ws:
        for frame in frames:  # no waiting: far faster than MediaPipe analyses
            ws.send_bytes(frame)
        answers: list[dict[str, Any]] = []
        while not answers or answers[-1]["frame_id"] < len(frames):
            answers.append(ws.receive_json())
        ws.send_text(json.dumps({"type": "stop"}))
        stopped = ws.receive_json()
    ids = [a["frame_id"] for a in answers]
    assert ids == sorted(set(ids)), "answers must be for ever newer frames"
    assert ids[-1] == len(frames), "the last frame sent is answered"
    dropped = sum(a["dropped"] for a in answers)
    assert dropped > 0
    # Every frame was either answered or reported dropped, exactly once.
    assert len(answers) + dropped == len(frames)
    assert len(answers) < len(frames)
    assert (stopped["frames_received"], stopped["frames_processed"], stopped["frames_dropped"]) == (
        len(frames),
        len(answers),
        dropped,
    )
    wait_for_no_streams(client)
    with database(client).session() as db:
        (session,) = [x for x in list_sessions(db) if x.streams and x.streams[0].stream_id == "burst"]
    (row,) = session.streams
    assert (row.status, row.close_reason) == ("completed", "stopped by the client")
    assert (row.frames_received, row.frames_processed, row.frames_dropped) == (
        len(frames),
        len(answers),
        dropped,
    )
    assert session.status == "completed"
    text = client.get("/metrics").text
    received = metric(text, "pose_stream_frames_received_total", stream="burst")
    processed = metric(text, "pose_stream_frames_processed_total", stream="burst")
    lost = metric(text, "pose_stream_frames_dropped_total", stream="burst")
    assert (received, processed, lost) == (len(frames), len(answers), dropped)
    assert received == processed + lost
    assert metric(text, "pose_stream_end_to_end_latency_seconds_count", stream="burst") == len(answers)


def test_an_open_stream_commits_what_it_recorded_periodically(
    tmp_path: Path, cameras: dict[str, list[bytes]]
) -> None:
    with (
        make_client(tmp_path, stream_flush_interval_s=0.001) as client,
        client.websocket_connect("/ws/streams/long") as ws,
    ):
        for frame in cameras["cam01"][:2]:
            ws.send_bytes(frame)
            assert ws.receive_json()["type"] == "frame"
        # The first frame's flush ran before the second frame was taken.
        with database(client).session() as db:
            (session,) = list_sessions(db)
        (row,) = session.streams
        assert row.status == "open"
        assert row.frames_processed >= 1


def test_sixteen_streams_at_once(client: TestClient, cameras: dict[str, list[bytes]]) -> None:
    counts: dict[str, int] = {}
    failures: list[BaseException] = []
    names = [f"s{i:02d}" for i in range(16)]

    def stream(name: str, frames: list[bytes]) -> None:
        try:
            with client.websocket_connect(f"/ws/streams/{name}") as ws:
                for frame in frames:
                    ws.send_bytes(frame)
                    answer = ws.receive_json()
                    assert answer["stream_id"] == name
                counts[name] = answer["frame_id"]
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    frames = list(cameras.values())
    threads = [threading.Thread(target=stream, args=(n, frames[i % 4][:2])) for i, n in enumerate(names)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures, failures
    assert counts == dict.fromkeys(names, 2)
    wait_for_no_streams(client)
    text = client.get("/metrics").text
    # The stream label is bounded (16 by default): all of these fit, each under its own name.
    assert all(metric(text, "pose_stream_frames_processed_total", stream=n) == 2 for n in names)
