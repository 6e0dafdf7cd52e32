"""/api/gpus on the real NVML path: an empty list and CPU mode here, never an error."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from service_kit.nvml import read_inventory


def test_list_gpus_matches_nvml(gpu_client: TestClient) -> None:
    resp = gpu_client.get("/api/gpus")
    assert resp.status_code == 200
    body = resp.json()
    inventory = read_inventory()
    assert [g["uuid"] for g in body["gpus"]] == [g.uuid for g in inventory.gpus]
    import torch

    assert body["cuda_runtime_version"] == (torch.version.cuda or "none")
    assert body["rocm_runtime_version"] == (getattr(torch.version, "hip", None) or "none")
    if not inventory.gpus:
        assert body["mode"] == "cpu"
        assert body["note"]
        assert body["alerts"] == []


def test_unknown_gpu_is_404_with_envelope(gpu_client: TestClient) -> None:
    count = len(read_inventory().gpus)
    resp = gpu_client.get(f"/api/gpus/{count}")
    assert resp.status_code == 404
    assert "no GPU with index" in resp.json()["error"]["message"]


def test_bad_gpu_index_is_422(gpu_client: TestClient) -> None:
    for bad in ("-1", "abc", "99999"):
        resp = gpu_client.get(f"/api/gpus/{bad}")
        assert resp.status_code == 422, bad
        assert resp.json()["error"]["code"] == "validation_error"


def test_metrics_expose_sampler_state(gpu_client: TestClient) -> None:
    gpu_client.get("/api/gpus")
    families = {f.name: f for f in text_string_to_metric_families(gpu_client.get("/metrics").text)}
    assert families["gpuopt_gpu_count"].samples[0].value == len(read_inventory().gpus)
    assert families["gpuopt_nvml_reads"].samples[0].value >= 1


def test_api_key_protects_gpus(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from gpu_optimizer.app import create_app
    from gpu_optimizer.settings import GpuOptSettings

    with TestClient(
        create_app(GpuOptSettings(log_dir=None, api_key="s3cret", checkpoint_root=tmp_path))
    ) as c:
        assert c.get("/api/gpus").status_code == 401
        assert c.get("/api/gpus", headers={"X-API-Key": "wrong"}).status_code == 401
        assert c.get("/api/gpus", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert c.get("/api/gpus", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/healthz").status_code == 200
