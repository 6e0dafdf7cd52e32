"""``/readyz`` tells the truth: 503 until the models are loaded and warmed, 503 again while draining
(404 while draining when asked for it, as HAProxy's disable-on-404 check does)."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from pose_analyzer.app import create_app
from pose_analyzer.settings import PoseSettings


def _settings(tmp_path: Path, **overrides: Any) -> PoseSettings:
    return PoseSettings(log_dir=None, database_url=f"sqlite:///{tmp_path}/pose.db", **overrides)


def test_readyz_is_503_while_the_models_cannot_load_and_healthz_still_answers(tmp_path: Path) -> None:
    # The YOLO weights do not exist, so the warm-up can never load a model.
    settings = _settings(tmp_path, backend="yolo", yolo_weights=tmp_path / "missing.pt")
    with TestClient(create_app(settings)) as client:
        client.portal.call(client.app_state["resources"].warm_up_done.wait)
        ready = client.get("/readyz")
        assert ready.status_code == 503
        error = ready.json()["error"]
        assert error["code"] == "not_ready"
        assert "yolo models could not be loaded" in error["message"]
        assert str(tmp_path) not in error["message"]  # the reason, not the exception's text
        # Not draining: HAProxy's check (draining_status=404) must mark it down too.
        assert client.get("/readyz?draining_status=404").status_code == 503
        assert client.get("/healthz").status_code == 200
        assert client.get("/api/status").json()["ready"] is False


def test_readyz_is_503_before_the_models_are_warm_and_200_after(tmp_path: Path) -> None:
    with TestClient(create_app(_settings(tmp_path, backend="mediapipe"))) as client:
        resources = client.app_state["resources"]
        # Start-up returned before the model loaded (building a MediaPipe graph takes far longer
        # than one request); until the warm-up ends the probe says no.
        assert not resources.warm_up_done.is_set(), "readiness was not deferred to the warm-up"
        early = client.get("/readyz")
        assert early.status_code == 503
        assert early.json()["error"]["message"] == "loading models"
        client.portal.call(resources.warm_up_done.wait)
        assert client.get("/readyz").status_code == 200
        assert resources.analyzers.setups == 1  # the still-image detector was loaded by the warm-up


def test_the_service_process_freezes_its_start_up_objects_once_warm(tmp_path: Path) -> None:
    # ``python -m pose_analyzer`` builds its app with freeze_gc: once the models are warm, the
    # libraries' and models' objects leave the cyclic collector's generations (a full pass over
    # them paused every stream).  Tests build apps without it; this one undoes its freeze.
    gc.unfreeze()
    try:
        settings = _settings(tmp_path, backend="mediapipe")
        with TestClient(create_app(settings, freeze_gc=True)) as client:
            resources = client.app_state["resources"]
            client.portal.call(resources.warm_up_done.wait)
            assert client.get("/readyz").status_code == 200
            assert gc.get_freeze_count() > 50_000
    finally:
        gc.unfreeze()


@pytest.mark.asyncio
async def test_readyz_is_503_once_the_service_drains(tmp_path: Path) -> None:
    app = create_app(_settings(tmp_path, backend="mediapipe"))
    async with app.router.lifespan_context(app) as state:
        assert state is not None
        await state["resources"].warm_up_done.wait()

        async def with_state(scope: Any, receive: Any, send: Any) -> None:
            # What the server does for every request: a copy of the lifespan's state.
            await app({**scope, "state": dict(state)}, receive, send)

        transport = httpx.ASGITransport(app=with_state)
        async with httpx.AsyncClient(transport=transport, base_url="http://pose") as client:
            assert (await client.get("/readyz")).status_code == 200
    async with httpx.AsyncClient(transport=transport, base_url="http://pose") as client:
        drained = await client.get("/readyz")
        # HAProxy's check asks for 404 while draining (disable-on-404: no new streams, the
        # running ones kept); any other value is refused.
        for_haproxy = await client.get("/readyz", params={"draining_status": 404})
        unknown = await client.get("/readyz", params={"draining_status": 200})
    assert drained.status_code == 503
    assert drained.json()["error"]["message"] == "draining"
    assert for_haproxy.status_code == 404
    assert unknown.status_code == 422
