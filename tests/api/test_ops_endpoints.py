"""Both services answer the operational endpoints with facts read from the real machine."""

from __future__ import annotations

import importlib.metadata
import os

import psutil
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from gpu_optimizer.app import create_app as create_gpu_app
from gpu_optimizer.settings import GpuOptSettings
from pose_analyzer.app import create_app as create_pose_app
from pose_analyzer.settings import PoseSettings
from service_kit.nvml import read_inventory
from service_kit.settings import config_digest


@pytest.fixture(params=["pose", "gpu"])
def client(request: pytest.FixtureRequest) -> TestClient:
    return request.getfixturevalue(f"{request.param}_client")  # type: ignore[no-any-return]


def test_healthz_and_readyz(client: TestClient) -> None:
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"


def test_metrics_are_prometheus_text_with_build_info(client: TestClient) -> None:
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(resp.text)}
    build = families["aiml_build_info"]
    sample = build.samples[0]
    assert sample.value == 1
    assert sample.labels["service"] == client.get("/healthz").json()["service"]
    assert "process_resident_memory_bytes" in families


def test_version_reports_build_digest_and_real_hardware(client: TestClient) -> None:
    body = client.get("/api/status/version").json()
    distribution = {"pose_analyzer": "pose-analyzer", "gpu_optimizer": "gpu-optimizer"}[body["service"]]
    assert body["version"] == importlib.metadata.version(distribution)
    assert len(body["config_digest"]) == 64
    assert body["git_commit"]
    assert body["build_time"]
    hw = body["hardware"]
    assert hw["cpu_cores_logical"] == os.cpu_count()
    assert hw["ram_total_bytes"] == psutil.virtual_memory().total
    assert hw["cpu_model"]
    inventory = read_inventory()
    assert [g["uuid"] for g in hw["gpus"]] == [g.uuid for g in inventory.gpus]
    if not inventory.gpus:
        assert hw["driver_version"] == "none"
        assert hw["cuda_driver_version"] == "none"
        assert hw["gpu_note"].startswith("no GPU")


def test_version_digest_is_the_settings_digest(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = GpuOptSettings(log_dir=None, port=9911, checkpoint_root=tmp_path)
    with TestClient(create_gpu_app(settings)) as c:
        assert c.get("/api/status/version").json()["config_digest"] == config_digest(settings)


def test_pose_version_shows_backend_choice_and_reason(pose_client: TestClient) -> None:
    backend = pose_client.get("/api/status/version").json()["pose_backend"]
    assert backend["requested"] == "mediapipe"
    assert backend["chosen"] == "mediapipe"
    assert backend["reason"]


def test_auto_backend_without_cuda_is_mediapipe(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = PoseSettings(log_dir=None, backend="auto", device="cpu")
    with TestClient(create_pose_app(settings)) as c:
        backend = c.get("/api/status/version").json()["pose_backend"]
    assert backend["chosen"] == "mediapipe"
    assert "cuda" in backend["reason"].lower()


def test_unknown_route_and_method_get_the_error_envelope(client: TestClient) -> None:
    missing = client.get("/api/does-not-exist")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    wrong = client.post("/healthz")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"


def test_two_apps_in_one_process_keep_separate_metrics(tmp_path) -> None:  # type: ignore[no-untyped-def]
    a = create_gpu_app(GpuOptSettings(log_dir=None, checkpoint_root=tmp_path))
    b = create_gpu_app(GpuOptSettings(log_dir=None, checkpoint_root=tmp_path, port=9001))
    with TestClient(a) as ca, TestClient(b) as cb:
        assert ca.get("/metrics").status_code == cb.get("/metrics").status_code == 200
