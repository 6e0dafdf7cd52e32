"""A real pose_analyzer process killed and stopped under a streaming client: nothing announced is lost.

SIGKILL right after reps were announced, SIGTERM mid-stream (the stream drains to its stop, or is
cut with 1012 once the grace passes), and a chaos run (three SIGKILLs at random moments, each
followed by a restart on the same database file).
"""

from __future__ import annotations

import itertools
import json
import random
import signal
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close
from websockets.sync.client import ClientConnection, connect

from tests.e2e.harness import RunningService, StartService
from tests.e2e.test_pose_streams import encoded_frames

Announced = set[tuple[str, int, int]]  # (session id, track id, rep index)


@pytest.fixture(scope="module")
def squats(test_data: Path) -> list[tuple[float, bytes]]:
    return encoded_frames(test_data / "videos/squat_8reps.mp4", step=3)


def start_pose(start_service: StartService, db_file: Path) -> RunningService:
    return start_service("pose_analyzer", "POSE_", backend="mediapipe", database_url=f"sqlite:///{db_file}")


def ws_url(service: RunningService, stream_id: str) -> str:
    return service.url.replace("http://", "ws://") + f"/ws/streams/{stream_id}"


def connect_to(service: RunningService, stream_id: str) -> ClientConnection:
    return connect(ws_url(service, stream_id), open_timeout=30, close_timeout=5)


def start_squats(ws: ClientConnection) -> str:
    """Send ``start`` (squats); returns the session the stream is recorded in."""
    ws.send(json.dumps({"type": "start", "exercise": "squat"}))
    started = json.loads(ws.recv(timeout=60))
    assert started["type"] == "started", started
    session_id: str = started["session_id"]
    return session_id


def receive(ws: ClientConnection, session_id: str, announced: Announced) -> dict[str, Any]:
    """The next message that is not a ``rep``; the reps announced before it go to ``announced``
    (each exactly once)."""
    while True:
        message: dict[str, Any] = json.loads(ws.recv(timeout=60))
        if message["type"] != "rep":
            return message
        told = (session_id, message["track_id"], message["rep"]["index"])
        assert told not in announced, f"{told} announced twice"
        announced.add(told)


def send_frame(
    ws: ClientConnection, capture_ts: float, data: bytes, session_id: str, announced: Announced
) -> dict[str, Any]:
    """Send a frame; its answer (the reps announced meanwhile go to ``announced``)."""
    ws.send(json.dumps({"type": "frame", "capture_ts": capture_ts}))
    ws.send(data)
    answer = receive(ws, session_id, announced)
    assert answer["type"] == "frame", answer
    assert answer["rep_count"] == len({a for a in announced if a[0] == session_id}), answer
    return answer


def close_of(ws: ClientConnection) -> Close:
    """The close frame the server sent (messages before it are skipped)."""
    try:
        while True:
            ws.recv(timeout=30)
    except ConnectionClosed as closed:
        rcvd = closed.rcvd
    assert rcvd is not None, "closed without a close frame"
    return rcvd


def kill(service: RunningService) -> None:
    service.process.send_signal(signal.SIGKILL)
    service.process.wait(timeout=30)


def stored(db_file: Path) -> list[tuple[str, int, int]]:
    with sqlite3.connect(db_file) as db:
        return db.execute(
            "SELECT s.session_id, r.track_id, r.rep_index FROM reps r JOIN streams s ON r.stream_pk = s.id"
        ).fetchall()


def statuses(db_file: Path, table: str) -> list[str]:
    with sqlite3.connect(db_file) as db:
        return [row[0] for row in db.execute(f"SELECT status FROM {table}")]


def test_reps_announced_before_a_sigkill_are_stored_after_the_restart(
    start_service: StartService, tmp_path: Path, squats: list[tuple[float, bytes]]
) -> None:
    db_file = tmp_path / "pose.db"
    service = start_pose(start_service, db_file)
    announced: Announced = set()
    with connect_to(service, "killed") as ws:
        session_id = start_squats(ws)
        for capture_ts, data in squats:
            send_frame(ws, capture_ts, data, session_id, announced)
            if len(announced) >= 2:
                break
        kill(service)  # at once, with the flush interval (10 s) far from over
    assert len(announced) >= 2
    start_pose(start_service, db_file)  # start-up closes what the kill left open
    rows = stored(db_file)
    assert announced <= set(rows)
    assert len(rows) == len(set(rows))
    assert statuses(db_file, "streams") == ["interrupted"]
    assert statuses(db_file, "sessions") == ["interrupted"]


def readyz_status(service: RunningService) -> int:
    try:
        with urllib.request.urlopen(f"{service.url}/readyz", timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def until_draining(service: RunningService) -> None:
    """Wait until the signalled service says so on /readyz (the drain starts within a tick)."""
    deadline = time.monotonic() + 30
    while readyz_status(service) != 503:
        assert time.monotonic() < deadline, "/readyz still 200 after SIGTERM"
        time.sleep(0.05)


def test_sigterm_drains_a_running_stream_until_its_stop_and_refuses_new_ones(
    start_service: StartService, tmp_path: Path, squats: list[tuple[float, bytes]]
) -> None:
    db_file = tmp_path / "pose.db"
    grace_s = 90  # far more than the test needs: the process must exit once the stream stopped
    service = start_service(
        "pose_analyzer",
        "POSE_",
        backend="mediapipe",
        database_url=f"sqlite:///{db_file}",
        drain_grace_s=str(grace_s),
    )
    announced: Announced = set()
    frames = iter(squats)
    with connect_to(service, "draining") as ws:
        session_id = start_squats(ws)
        for capture_ts, data in frames:
            send_frame(ws, capture_ts, data, session_id, announced)
            if announced:
                break
        service.process.send_signal(signal.SIGTERM)
        until_draining(service)
        with connect_to(service, "late") as late:
            refused = close_of(late)
        before = len(announced)
        for capture_ts, data in frames:  # still served: on to the next rep
            send_frame(ws, capture_ts, data, session_id, announced)
            if len(announced) > before:
                break
        assert service.process.poll() is None  # a stream runs: the service waits for it
        ws.send(json.dumps({"type": "stop"}))
        stopped = receive(ws, session_id, announced)
    service.process.wait(timeout=grace_s / 3)  # exits once drained, long before the grace ends
    assert (refused.code, "no new streams" in refused.reason) == (1013, True)
    assert len(announced) > before >= 1
    assert (stopped["type"], stopped["rep_count"]) == ("stopped", len(announced))
    rows = stored(db_file)
    assert announced == set(rows)
    assert len(rows) == len(set(rows))
    assert statuses(db_file, "streams") == ["completed"]  # the refused stream was never recorded


def test_sigterm_closes_a_stream_still_open_after_the_grace_with_1012_as_interrupted(
    start_service: StartService, tmp_path: Path, squats: list[tuple[float, bytes]]
) -> None:
    db_file = tmp_path / "pose.db"
    service = start_service(
        "pose_analyzer", "POSE_", backend="mediapipe", database_url=f"sqlite:///{db_file}", drain_grace_s="1"
    )
    announced: Announced = set()
    with connect_to(service, "stopped") as ws:
        session_id = start_squats(ws)
        for capture_ts, data in squats:
            send_frame(ws, capture_ts, data, session_id, announced)
            if announced:
                break
        service.process.send_signal(signal.SIGTERM)
        close = close_of(ws)  # the client sends nothing more: the grace passes
    service.process.wait(timeout=60)
    assert close.code == 1012
    assert "restarting" in close.reason
    assert announced
    assert announced <= set(stored(db_file))
    assert statuses(db_file, "streams") == ["interrupted"]
    assert statuses(db_file, "sessions") == ["interrupted"]


def endless(clip: list[tuple[float, bytes]]) -> Iterator[tuple[float, bytes]]:
    """The clip over and over, capture times going on from one pass to the next."""
    period = clip[-1][0] + (clip[-1][0] - clip[-2][0])
    for n in itertools.count():
        for capture_ts, data in clip:
            yield n * period + capture_ts, data


def test_chaos_three_sigkills_at_random_moments_lose_no_announced_rep(
    start_service: StartService, tmp_path: Path, squats: list[tuple[float, bytes]]
) -> None:
    db_file = tmp_path / "pose.db"
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    announced: Announced = set()
    frames = endless(squats)
    for run in range(4):
        service = start_pose(start_service, db_file)
        # Runs 0-2: SIGKILL from another thread after a random time, whatever the client is doing
        # (sending, waiting for an answer, between frames); run 3 streams a while and stops.
        killer = threading.Timer(rng.uniform(0.2, 3.0), kill, [service]) if run < 3 else None
        with connect_to(service, f"chaos{run}") as ws:
            session_id = start_squats(ws)
            if killer is not None:
                killer.start()
            try:
                for capture_ts, data in itertools.islice(frames, 400 if killer else 40):
                    send_frame(ws, capture_ts, data, session_id, announced)
                assert killer is None, f"still streaming after the kill (seed {seed})"
                ws.send(json.dumps({"type": "stop"}))
                assert receive(ws, session_id, announced)["type"] == "stopped"
            except (ConnectionClosed, OSError):
                assert killer is not None, f"the service went away unasked (seed {seed})"
        if killer is not None:
            killer.join()
        else:
            service.stop()
    # Each start-up closed what the kill before it left open; the last run ended with stop.
    rows = stored(db_file)
    assert announced, f"no rep announced (seed {seed})"
    assert announced <= set(rows), f"announced reps lost (seed {seed})"
    assert len(rows) == len(set(rows)), f"a rep stored twice (seed {seed})"
    assert sorted(statuses(db_file, "streams")) == ["completed"] + ["interrupted"] * 3, f"seed {seed}"
    assert sorted(statuses(db_file, "sessions")) == ["completed"] + ["interrupted"] * 3, f"seed {seed}"
