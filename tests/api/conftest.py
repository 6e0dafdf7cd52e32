from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from gpu_optimizer.app import create_app as create_gpu_app
from gpu_optimizer.settings import GpuOptSettings
from pose_analyzer.app import create_app as create_pose_app
from pose_analyzer.settings import PoseSettings


@pytest.fixture
def pose_client(tmp_path) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    settings = PoseSettings(
        log_dir=tmp_path / "logs", backend="mediapipe", database_url=f"sqlite:///{tmp_path}/pose.db"
    )
    with TestClient(create_pose_app(settings)) as client:
        # Models load in the background after start-up; wait for that to end (an event, no polling).
        client.portal.call(client.app_state["resources"].warm_up_done.wait)
        yield client


@pytest.fixture
def gpu_client(tmp_path) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    settings = GpuOptSettings(
        log_dir=tmp_path / "logs",
        checkpoint_root=tmp_path / "ckpt",
        database_url=f"sqlite:///{tmp_path}/gpu.db",
    )
    with TestClient(create_gpu_app(settings)) as client:
        yield client
