"""Profiling jobs over HTTP give the same numbers as the engine run directly."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from gpu_optimizer.app import create_app
from gpu_optimizer.jobs import JobContext, JobRunner
from gpu_optimizer.jobs.runner import JobFunction
from gpu_optimizer.profiling.models import get_model_spec
from gpu_optimizer.profiling.runs import profile
from gpu_optimizer.settings import GpuOptSettings


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


def blocked_job(started: threading.Event, release: threading.Event) -> JobFunction:
    def run(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        started.set()
        assert release.wait(60), "the test never released the job"
        return {}

    return run


def test_a_flood_of_jobs_is_refused_with_429_and_retry_after(tmp_path: Path) -> None:
    settings = GpuOptSettings(
        log_dir=None,
        checkpoint_root=tmp_path / "ckpt",
        database_url=f"sqlite:///{tmp_path}/gpu.db",
        job_workers=1,
        job_queue_size=3,
    )
    body = {"model": "resnet18", "batch_size": 1, "recommendations": False}
    started, release = threading.Event(), threading.Event()
    with TestClient(create_app(settings)) as client:
        runner: JobRunner = client.app_state["resources"].jobs
        runner.submit("blocker", {}, blocked_job(started, release))
        assert started.wait(30), "the only worker is now busy"
        answers = [client.post("/api/profile", json=body) for _ in range(50)]
        assert [r.status_code for r in answers[:3]] == [202, 202, 202]
        refused = answers[3:]
        assert {r.status_code for r in refused} == {429}
        assert int(refused[0].headers["Retry-After"]) >= 1
        assert "queue is full" in refused[0].json()["error"]["message"]
        assert len(client.get("/api/jobs", params={"limit": 1000}).json()) == 4, (
            "refused jobs are not recorded"
        )
        release.set()
        for accepted in answers[:3]:
            assert wait_job(client, accepted.json()["id"])["state"] == "succeeded"
        assert client.post("/api/profile", json=body).status_code == 202, "room again once jobs ran"


def test_a_failed_job_tells_the_client_no_internals(tmp_path: Path) -> None:
    settings = GpuOptSettings(
        log_dir=tmp_path / "logs",
        checkpoint_root=tmp_path / "ckpt",
        database_url=f"sqlite:///{tmp_path}/gpu.db",
    )

    def leaky(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        raise OSError(f"cannot open {tmp_path}/secret/weights.pt")

    with TestClient(create_app(settings)) as client:
        runner: JobRunner = client.app_state["resources"].jobs
        job = wait_job(client, runner.submit("leaky", {}, leaky).id)
    assert job["state"] == "failed"
    assert job["error"] == f"the job failed (job id {job['id']})"
    assert str(tmp_path) not in job["error"]
    logged = (tmp_path / "logs" / "gpu_optimizer.log").read_text()
    assert f"cannot open {tmp_path}/secret/weights.pt" in logged, "the exception goes to the log"
