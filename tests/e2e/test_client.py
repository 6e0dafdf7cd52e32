"""The camera client (``pose_analyzer.client``, ``pose-analyzer stream``) against a real service process.

The squat clip (8 squats) is streamed frame by frame; the reps the client was told about are the
reps in the database.  The service is stopped (SIGTERM) and started again mid-stream: the client
reconnects by itself, and the stream goes on in the same session, its rep count continuing from
the database.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from pose_analyzer.client import CameraSession, ClientConfig, FrameSource, StreamStats
from pose_analyzer.storage import create_database, get_session
from pose_analyzer.storage.models import Repetition, StreamRecord
from tests.e2e.harness import ROOT, StartService, free_port, start_process

WIDTH = 320
EVERY = 2  # 12 fps of the 24 fps clip: enough for squats, half the work


def squat_source(test_data: Path) -> FrameSource:
    return FrameSource(
        str(test_data / "videos/squat_8reps.mp4"), max_width=WIDTH, as_fast_as_possible=True, every=EVERY
    )


def stored_reps(url: str, session_id: str) -> list[tuple[str, float, float]]:
    """Every rep of the session as (stream label, start, end) on the client's capture clock."""
    with create_database(url) as database, database.session() as db:
        rows = db.execute(
            select(StreamRecord.stream_id, StreamRecord.clock_origin_s, Repetition.start_s, Repetition.end_s)
            .join(Repetition, Repetition.stream_pk == StreamRecord.id)
            .where(StreamRecord.session_id == session_id)
        ).all()
    return sorted((label, origin + start, origin + end) for label, origin, start, end in rows)


def told_reps(stats: dict[str, StreamStats]) -> list[tuple[str, float, float]]:
    return sorted((r.stream_id, r.start_s, r.end_s) for s in stats.values() for r in s.reps)


def assert_same_reps(told: list[tuple[str, float, float]], stored: list[tuple[str, float, float]]) -> None:
    # Times go through the database as float8 / SQLite REAL after subtracting the clock origin.
    assert len(told) == len(stored), (told, stored)
    for (label_t, start_t, end_t), (label_s, start_s, end_s) in zip(told, stored, strict=True):
        assert label_t == label_s
        assert start_t == pytest.approx(start_s, abs=1e-6)
        assert end_t == pytest.approx(end_s, abs=1e-6)


def test_the_client_streams_a_clip_and_every_rep_it_was_told_is_stored(
    start_service: StartService, test_data: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/pose.db"
    service = start_service("pose_analyzer", "POSE_", backend="mediapipe", database_url=url)
    messages: list[dict[str, Any]] = []
    config = ClientConfig(service.url.replace("http://", "ws://"), exercise="squat")
    session = CameraSession(
        config, {"front": squat_source(test_data)}, on_message=lambda _, m: messages.append(m)
    )
    stats = asyncio.run(session.run())

    assert session.failures == {}
    front = stats["front"]
    assert (front.state, front.connections, front.reconnects) == ("stopped", 1, 0)
    assert front.sent == front.answered > 100
    assert front.dropped == 0
    assert front.rep_count == 8
    assert [r.index for r in front.reps] == list(range(1, 9))
    assert session.clients["front"].stopped is not None
    assert session.clients["front"].stopped["rep_count"] == 8
    assert [m["type"] for m in messages[:2]] == ["started", "frame"]
    assert messages[-1]["type"] == "stopped"
    assert session.session_id is not None
    assert_same_reps(told_reps(stats), stored_reps(url, session.session_id))


def test_the_client_reconnects_after_a_restart_and_the_session_goes_on(
    test_data: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/pose.db"
    port = free_port()
    # A short grace: the stream (which would otherwise run on to the clip's end) is cut with 1012.
    env = {"backend": "mediapipe", "database_url": url, "drain_grace_s": "0.5"}
    service = start_process("pose_analyzer", "POSE_", port, tmp_path, **env)
    config = ClientConfig(f"ws://127.0.0.1:{port}", exercise="squat", max_backoff_s=0.5)
    first_reps = threading.Event()
    counts_before: list[int] = []

    def on_message(_: str, message: dict[str, Any]) -> None:
        if message["type"] == "frame" and message["rep_count"] >= 3 and not first_reps.is_set():
            counts_before.append(message["rep_count"])
            first_reps.set()

    session = CameraSession(config, {"front": squat_source(test_data)}, on_message=on_message)
    result: dict[str, Any] = {}

    def run_client() -> None:
        try:
            result["stats"] = asyncio.run(session.run())
        except BaseException as exc:  # reported by the test thread
            result["error"] = exc

    client = threading.Thread(target=run_client)
    client.start()
    try:
        assert first_reps.wait(timeout=120), "no 3 reps before the restart"
        service.stop()  # SIGTERM: drains, then the stream still open ends interrupted (1012)
        service = start_process("pose_analyzer", "POSE_", port, tmp_path, **env)
        client.join(timeout=180)
        assert not client.is_alive()
    finally:
        service.stop()
    assert "error" not in result, result
    with create_database(url) as database, database.session() as db:
        info = get_session(db, session.session_id or "")
    statuses = [s.status for s in info.streams]
    front: StreamStats = result["stats"]["front"]
    # On failure: how each connection ended, as the service recorded it and as the client saw it.
    ends = {"service": [(s.status, s.close_reason) for s in info.streams], "client": front.errors}
    assert session.failures == {}, ends
    assert front.state == "stopped"
    assert front.connections >= 2
    assert len(front.outages_s) == front.reconnects >= 1
    # Reps went on from the database: the second connection started at the count already stored.
    assert session.session_id is not None
    told = told_reps(result["stats"])
    stored = stored_reps(url, session.session_id)
    assert_same_reps(told, stored)
    assert front.rep_count == len(stored)
    assert front.rep_count > counts_before[0]
    # A rep in progress when the service stopped may be lost (never announced), no more.
    assert 7 <= front.rep_count <= 8
    assert statuses.count("completed") == 1, ends
    assert statuses[:-1] == ["interrupted"] * (len(statuses) - 1), ends
    assert info.status == "open"  # interrupted by the restart, open again once the camera came back


def test_the_cli_writes_json_lines_and_a_summary(
    start_service: StartService, test_data: Path, tmp_path: Path
) -> None:
    service = start_service(
        "pose_analyzer",
        "POSE_",
        backend="mediapipe",
        database_url=f"sqlite:///{tmp_path}/pose.db",
        api_key="k3y",
    )
    ws_url = service.url.replace("http://", "ws://")
    clip = str(test_data / "videos/curl_3reps_starts_midrep.mp4")
    command = [
        str(Path(sys.executable).parent / "pose-analyzer"),
        "stream",
        clip,
        "--url",
        ws_url,
        "--exercise",
        "biceps_curl",
    ]
    options = ["--as-fast-as-possible", "--every", "3", "--max-width", str(WIDTH), "--json"]
    env = {**os.environ, "POSE_API_KEY": "k3y"}
    done = subprocess.run(
        [*command, *options], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert {line["stream"] for line in lines} == {"curl_3reps_starts_midrep"}
    assert lines[0]["type"] == "started"
    assert lines[-1]["type"] == "stopped"
    frames = [line for line in lines if line["type"] == "frame"]
    assert [f["frame_id"] for f in frames] == list(range(1, len(frames) + 1))
    # Each rep in a message of its own once committed; the answers' count never runs ahead of it.
    reps = [line for line in lines if line["type"] == "rep"]
    assert [r["rep_count"] for r in reps] == [1, 2, 3] == [r["rep"]["index"] for r in reps]
    assert frames[-1]["rep_count"] <= lines[-1]["rep_count"] == 3
    assert "summary" in done.stderr

    # The wrong key: refused at once with the reason, exit 1, no endless retrying.
    env["POSE_API_KEY"] = "wrong"
    refused = subprocess.run(
        [*command, *options], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 1
    assert "401" in refused.stderr
    bad = subprocess.run(
        [*command[:-1], "no_such_exercise"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2
    assert "unknown exercise" in bad.stderr


def test_ctrl_c_sends_stop_and_waits_for_the_totals(
    start_service: StartService, test_data: Path, tmp_path: Path
) -> None:
    service = start_service(
        "pose_analyzer", "POSE_", backend="mediapipe", database_url=f"sqlite:///{tmp_path}/pose.db"
    )
    cli = str(Path(sys.executable).parent / "pose-analyzer")
    clip = str(test_data / "videos/squat_8reps.mp4")  # paced at its 24 fps: 14.5 s unless stopped
    url = service.url.replace("http://", "ws://")
    command = [cli, "stream", clip, "--url", url, "--exercise", "squat", "--max-width", str(WIDTH), "--json"]
    with subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        frames = 0
        for line in proc.stdout:
            frames += json.loads(line)["type"] == "frame"
            if frames == 5:
                break
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in rest.splitlines()]
    assert lines[-1]["type"] == "stopped"
    assert lines[-1]["frames_received"] < 200  # stopped early, not at the end of the clip
    assert "stopping" in err
