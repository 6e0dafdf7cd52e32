"""Profiling jobs over HTTP give the same numbers as the engine run directly."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient

from gpu_optimizer.profiling.models import get_model_spec
from gpu_optimizer.profiling.runs import profile


def wait_job(client: TestClient, job_id: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed"):
            return job  # type: ignore[no-any-return]
        time.sleep(0.2)
    raise TimeoutError(job_id)


def test_profile_job_matches_engine(gpu_client: TestClient) -> None:
    body = {
        "model": "resnet18",
        "input_shape": [3, 64, 64],
        "batch_size": 2,
        "recommendations": False,
        "find_batch": {"budget_gb": 0.5, "limit": 256},
    }
    resp = gpu_client.post("/api/profile", json=body)
    assert resp.status_code == 202, resp.text
    job = wait_job(gpu_client, resp.json()["id"])
    assert job["state"] == "succeeded", job["error"]
    report = job["result"]["report"]
    direct = profile(get_model_spec("resnet18"), [3, 64, 64], batch_size=2, recommendations=False)
    assert report["peak_bytes"] == direct.peak_bytes
    assert report["parameter_bytes"] == direct.parameter_bytes
    search = job["result"]["batch_search"]
    assert search["batch_size"] >= 1
    assert search["peak_bytes"][str(search["batch_size"])] <= 0.5 * 1024**3
    listed = gpu_client.get("/api/jobs", params={"state": "succeeded"}).json()
    assert job["id"] in [j["id"] for j in listed]


def test_models_are_listed(gpu_client: TestClient) -> None:
    names = {m["name"] for m in gpu_client.get("/api/profile/models").json()}
    assert {"resnet18", "resnet50"} <= names


def test_bad_requests_are_422_and_never_import_code(gpu_client: TestClient) -> None:
    for body in (
        {"model": "os:system"},
        {"model": "no-such-net"},
        {"model": "resnet18", "input_shape": [3, 224]},
        {"model": "resnet18", "input_shape": [0, 2, 2]},
        {"model": "resnet18", "batch_size": 0},
        {"model": "resnet18", "dtype": "int8"},
        {"model": "resnet18", "find_batch": {}},
    ):
        resp = gpu_client.post("/api/profile", json=body)
        assert resp.status_code == 422, (body, resp.text)
        assert resp.json()["error"]["message"]
    assert gpu_client.get("/api/jobs").json() == []


def test_cuda_job_on_a_cpu_machine_fails_cleanly(gpu_client: TestClient) -> None:
    import torch

    if torch.cuda.is_available():
        return
    resp = gpu_client.post("/api/profile", json={"model": "resnet18", "device": "cuda", "batch_size": 1})
    job = wait_job(gpu_client, resp.json()["id"])
    assert job["state"] == "failed"
    assert "CUDA" in job["error"] or "cuda" in job["error"]
