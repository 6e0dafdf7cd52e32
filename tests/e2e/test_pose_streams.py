"""A real pose_analyzer process: four synchronised cameras and an exercise clip streamed at once."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from pose_analyzer.storage import angle_series, create_database, list_reps, list_sessions, start_session
from tests.clips import encoded_frames as _encoded_frames
from tests.e2e.harness import StartService, run_concurrently

WIDTH = 480
CAMERA_FRAMES = 20


def encoded_frames(video: Path, step: int, limit: int | None = None) -> list[tuple[float, bytes]]:
    return _encoded_frames(video, step, WIDTH, limit)


def stream_and_wait(
    url: str, frames: list[tuple[float, bytes]], start: dict[str, Any] | None
) -> dict[str, Any]:
    """Send each frame after the previous answer; returns the answers, the ``rep`` messages
    (announcements of committed reps, between any two answers) and the ``stopped`` totals."""
    answers: list[dict[str, Any]] = []
    reps: list[dict[str, Any]] = []

    def receive() -> dict[str, Any]:
        while (message := json.loads(ws.recv(timeout=60)))["type"] == "rep":
            reps.append(message)
        return dict(message)

    with connect(url, open_timeout=30, close_timeout=10) as ws:
        if start is not None:
            ws.send(json.dumps(start))
            started = json.loads(ws.recv(timeout=60))
            assert started["type"] == "started", started
        for frame_id, (capture_ts, data) in enumerate(frames, start=1):
            ws.send(json.dumps({"type": "frame", "frame_id": frame_id, "capture_ts": capture_ts}))
            ws.send(data)
            answers.append(receive())
        ws.send(json.dumps({"type": "stop"}))
        stopped = receive()
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=30)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1000
    return {"answers": answers, "reps": reps, "stopped": stopped}


def close_after_sending(url: str, data: bytes) -> tuple[int, str]:
    """Send one binary message; returns the close code and reason the server answered with."""
    with connect(url, open_timeout=30, close_timeout=10, max_size=None) as ws:
        try:
            ws.send(data)
        except ConnectionClosed as closed_while_sending:  # refused before the message was all out
            rcvd = closed_while_sending.rcvd
        else:
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=60)
            rcvd = closed.value.rcvd
    assert rcvd is not None
    return rcvd.code, rcvd.reason


def test_four_cameras_and_an_exercise_clip_at_once(
    start_service: StartService, test_data: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/pose.db"
    service = start_service("pose_analyzer", "POSE_", backend="mediapipe", database_url=url)
    # The four cameras record into one session (made here, as a client of the same database);
    # the exercise stream gets a session of its own.
    with create_database(url) as database, database.session() as db:
        multicam = start_session(db, meta={"rig": "pose2sim demo"})
    base = service.url.replace("http://", "ws://")
    cameras = {
        f"cam0{i}": encoded_frames(test_data / f"multicam/videos/cam0{i}.mp4", step=3, limit=CAMERA_FRAMES)
        for i in range(1, 5)
    }
    curl = encoded_frames(test_data / "videos/curl_3reps_starts_midrep.mp4", step=3)
    jobs: dict[str, tuple[list[tuple[float, bytes]], dict[str, Any] | None]] = {
        **{name: (frames, {"type": "start", "session_id": multicam}) for name, frames in cameras.items()},
        "curl": (curl, {"type": "start", "exercise": "biceps_curl"}),
    }
    results = run_concurrently(lambda name: stream_and_wait(f"{base}/ws/streams/{name}", *jobs[name]), jobs)

    for name, (frames, _) in jobs.items():
        answers, stopped = results[name]["answers"], results[name]["stopped"]
        assert [a["frame_id"] for a in answers] == list(range(1, len(frames) + 1)), name
        assert all(a["type"] == "frame" and a["stream_id"] == name and a["dropped"] == 0 for a in answers)
        with_people = [a for a in answers if a["people"]]
        assert len(with_people) >= 0.8 * len(answers), f"{name}: people in {len(with_people)}/{len(answers)}"
        assert all(a["processed_ts"] >= a["received_ts"] for a in answers)
        assert (stopped["frames_received"], stopped["frames_processed"], stopped["frames_dropped"]) == (
            len(frames),
            len(frames),
            0,
        )

    curl_answers, curl_stopped = results["curl"]["answers"], results["curl"]["stopped"]
    # The clip starts mid-rep: three full curls, the partial first one not counted.
    assert curl_stopped["rep_count"] == 3
    assert [r["index"] for r in curl_stopped["reps"]] == [1, 2, 3]
    assert all(0 <= r["score"] <= 100 for r in curl_stopped["reps"])
    counts = [a["rep_count"] for a in curl_answers]
    assert counts == sorted(counts)
    # Each rep announced once, once committed, after its frame's answer; answers count only those.
    reps = results["curl"]["reps"]
    assert [(m["rep_count"], m["rep"]) for m in reps] == list(enumerate(curl_stopped["reps"], 1))
    assert all(0 < m["commit_ms"] <= m["latency_ms"] for m in reps)
    assert counts[-1] <= 3
    assert all(not a["people"] or a["people"][0]["rep"] is None for a in curl_answers)
    assert all(not results[name]["reps"] for name in cameras)  # no exercise: no reps

    with urllib.request.urlopen(f"{service.url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    total = sum(len(frames) for frames, _ in jobs.values())
    processed = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("pose_stream_frames_processed_total{")
    )
    assert processed == total
    assert 'pose_stream_reps_total{exercise="biceps_curl"} 3.0' in text
    assert 'pose_stream_form_score_percent_count{exercise="biceps_curl"} 3.0' in text

    # JPEG frames do not compress: the service declines permessage-deflate, which the client offers.
    with connect(f"{base}/ws/streams/plain", open_timeout=30, close_timeout=10) as ws:
        assert ws.response is not None
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None

    # Oversize frames (12 MB, 50 MB) over the service's limit (10 MB): 1009 with the service's reason.
    for size in (12 * 1024 * 1024, 50 * 1024 * 1024):
        code, reason = close_after_sending(f"{base}/ws/streams/big{size}", b"\xff\xd8\xff" + bytes(size))
        assert (code, reason) == (1009, f"frame of {size + 3} bytes is over the 10485760 byte limit"), size
    with urllib.request.urlopen(f"{service.url}/metrics", timeout=10) as resp:
        assert 'pose_stream_websocket_errors_total{reason="frame_too_large"} 2.0' in resp.read().decode()
    assert close_after_sending(f"{base}/ws/streams/cut", curl[0][1][:1000])[0] == 1003

    expected = {name: len(frames) for name, (frames, _) in jobs.items()}
    check_database(url, multicam, expected)
    # What was committed survives a restart (which marks only streams left open as interrupted).
    service.stop()
    start_service("pose_analyzer", "POSE_", backend="mediapipe", database_url=url)
    check_database(url, multicam, expected)


def check_database(url: str, multicam: str, frames: dict[str, int]) -> None:
    with create_database(url, upgrade=False) as database, database.session() as db:
        sessions = {s.id: s for s in list_sessions(db)}
        cams = sessions[multicam]
        assert sorted(s.stream_id for s in cams.streams) == ["cam01", "cam02", "cam03", "cam04"]
        (curl,) = [s for s in sessions.values() if s.exercise == "biceps_curl"]
        assert curl.status == "completed"
        for stream in (*cams.streams, *curl.streams):
            assert (stream.status, stream.close_reason) == ("completed", "stopped by the client")
            n = frames[stream.stream_id]
            assert (stream.frames_received, stream.frames_processed, stream.frames_dropped) == (n, n, 0)
        reps = list_reps(db, curl.id)
        assert [(r.stream_id, r.index, r.exercise) for r in reps] == [
            ("curl", i, "biceps_curl") for i in (1, 2, 3)
        ]
        assert all(0 <= r.score <= 100 for r in reps)
        assert angle_series(db, curl.id), "per-second angle aggregates were stored"
