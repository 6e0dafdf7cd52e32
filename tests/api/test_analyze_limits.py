"""POST /api/analyze is bounded: images in analysis and requests waiting; beyond that, 429 + Retry-After."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pose_analyzer.app import create_app
from pose_analyzer.limits import BusyError, WorkLimit
from pose_analyzer.resources import PoseResources
from pose_analyzer.settings import PoseSettings


def test_a_request_over_the_bound_gets_429_with_retry_after_and_a_freed_slot_serves_again(
    tmp_path: Path, test_data: Path
) -> None:
    settings = PoseSettings(
        log_dir=tmp_path / "logs",
        backend="mediapipe",
        database_url=f"sqlite:///{tmp_path}/pose.db",
        analyze_max_running=1,
        analyze_max_waiting=0,
    )
    image = (test_data / "images/mediapipe_pose_test_image.jpg").read_bytes()
    with TestClient(create_app(settings)) as client:
        resources: PoseResources = client.app_state["resources"]
        portal = client.portal
        assert portal is not None  # the lifespan runs
        held = resources.analyze_limit.slot()
        portal.call(held.__aenter__)  # another request holds the one slot
        try:
            busy = client.post("/api/analyze", files={"file": ("a.jpg", image, "image/jpeg")})
        finally:
            portal.call(held.__aexit__, None, None, None)
        served = client.post("/api/analyze", files={"file": ("a.jpg", image, "image/jpeg")})
    assert busy.status_code == 429
    assert busy.headers["Retry-After"] == "1"
    assert "busy" in busy.json()["error"]["message"]
    assert served.status_code == 200, served.text
    assert served.json()["people"]


async def test_work_limit_lets_the_bounded_line_wait_and_refuses_the_rest() -> None:
    limit = WorkLimit(running=1, waiting=1)
    entered = asyncio.Event()
    release = asyncio.Event()

    async def hold() -> None:
        async with limit.slot():
            entered.set()
            await release.wait()

    holder = asyncio.ensure_future(hold())
    await entered.wait()
    waiter = asyncio.ensure_future(hold())  # waits in line for the slot
    while limit.admitted < 2:
        await asyncio.sleep(0)  # let the waiter join the line (no time passes)
    with pytest.raises(BusyError):
        async with limit.slot():
            pass
    release.set()
    await asyncio.gather(holder, waiter)
    assert limit.admitted == 0
    with pytest.raises(ValueError, match="running"):
        WorkLimit(running=0, waiting=1)
