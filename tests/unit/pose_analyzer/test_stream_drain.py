"""The stream hub's drain (SIGTERM): new streams refused before anything is recorded, running ones
given the grace, those left interrupted and waited for; and a connection lost while an answer goes
out ends as the client leaving, never as the service's failure."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from pose_analyzer.detection.options import DetectorOptions
from pose_analyzer.metrics import StreamMetrics
from pose_analyzer.settings import PoseSettings
from pose_analyzer.storage import create_database
from pose_analyzer.streaming.connection import StreamConnection
from pose_analyzer.streaming.errors import ClientGoneError, ServiceUnavailableError
from pose_analyzer.streaming.hub import StreamHub


def make_hub(tmp_path: Path) -> tuple[StreamHub, PoseSettings, CollectorRegistry]:
    settings = PoseSettings(log_dir=tmp_path, backend="mediapipe")
    registry = CollectorRegistry()
    options = DetectorOptions.from_settings(settings, "cpu")
    return StreamHub(settings, StreamMetrics(registry), "mediapipe", options), settings, registry


async def test_a_drain_waits_for_running_streams_and_refuses_new_ones(tmp_path: Path) -> None:
    hub, _, _ = make_hub(tmp_path)
    interrupted: list[str] = []
    hub.register("running", interrupted.append)
    drain = asyncio.ensure_future(hub.drain(60.0, "restarting"))
    await asyncio.sleep(0.05)
    with pytest.raises(ServiceUnavailableError) as refused:
        hub.register("late", interrupted.append)
    assert refused.value.close_code == 1013
    assert not drain.done()  # the running stream has its grace
    hub.unregister("running")
    assert not drain.done()  # unregistered, but its end not yet committed
    hub.ended()
    assert await asyncio.wait_for(drain, 5) == 0
    assert interrupted == []


async def test_streams_left_at_the_end_of_the_grace_are_interrupted_and_waited_for(tmp_path: Path) -> None:
    hub, _, _ = make_hub(tmp_path)
    interrupted: list[str] = []

    def interrupt(reason: str) -> None:  # what a connection does: ends, then commits its end
        interrupted.append(reason)
        hub.unregister("stuck")
        asyncio.get_running_loop().call_later(0.05, hub.ended)

    hub.register("stuck", interrupt)
    assert await asyncio.wait_for(hub.drain(0.1, "restarting"), 5) == 1
    assert interrupted == ["restarting"]
    assert hub.active == 0


async def test_an_idle_hub_drains_at_once(tmp_path: Path) -> None:
    hub, _, _ = make_hub(tmp_path)
    assert await asyncio.wait_for(hub.drain(60.0, "restarting"), 5) == 0


class LeavingClient:
    """Sends ``start``; the connection is gone by the time the service answers it."""

    def __init__(self) -> None:
        self.messages: list[str | bytes] = [json.dumps({"type": "start", "exercise": "squat"})]
        self.closed: tuple[int, str] | None = None

    async def receive(self) -> str | bytes | None:
        return self.messages.pop(0) if self.messages else None

    async def send_text(self, text: str) -> None:
        raise ClientGoneError("the connection is gone (1006)")

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    async def stalled(self) -> None:
        await asyncio.Event().wait()


async def test_a_connection_lost_while_answering_ends_as_the_client_leaving(tmp_path: Path) -> None:
    hub, settings, registry = make_hub(tmp_path)
    db_file = tmp_path / "pose.db"
    database = create_database(f"sqlite:///{db_file}")
    client = LeavingClient()
    connection = StreamConnection(hub, settings, database, "gone", client)
    try:
        await asyncio.wait_for(connection.serve(authorised=True), 60)
    finally:
        await hub.close()
        database.dispose()
    with sqlite3.connect(db_file) as db:
        ends = db.execute("SELECT status, close_reason FROM streams").fetchall()
    assert ends == [("completed", "client disconnected")]  # not "failed" with an internal error
    assert client.closed is None  # nothing to close: the connection is gone
    assert registry.get_sample_value("pose_stream_websocket_errors_total", {"reason": "internal"}) is None
    assert await asyncio.wait_for(hub.drain(60.0, "restarting"), 5) == 0  # its end counted
