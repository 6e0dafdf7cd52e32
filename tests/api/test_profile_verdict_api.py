"""POST /api/profile with a target GPU: the job answers with a verdict the engine agrees with."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient

from gpu_optimizer.profiling.models import get_model_spec
from gpu_optimizer.profiling.runs import verdict
from gpu_optimizer.profiling.setup import TrainingSetup


def wait_job(client: TestClient, job_id: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed"):
            return job  # type: ignore[no-any-return]
        time.sleep(0.2)
    raise TimeoutError(job_id)


def test_profile_job_with_gpu_returns_the_engines_verdict(gpu_client: TestClient) -> None:
    body = {
        "model": "gpt-tiny",
        "input_shape": [16],
        "batch_size": 4,
        "gpu": "rtx-3060",
        "precision": "amp-bf16",
        "keep_output": True,
        "recommendations": False,
    }
    resp = gpu_client.post("/api/profile", json=body)
    assert resp.status_code == 202, resp.text
    job = wait_job(gpu_client, resp.json()["id"])
    assert job["state"] == "succeeded", job["error"]
    got = job["result"]["verdict"]
    setup = TrainingSetup("amp-bf16", keep_output=True)
    direct = verdict(get_model_spec("gpt-tiny"), "rtx-3060", [16], batch_size=4, setup=setup)
    assert got["fits"] is direct.fits is True
    assert got["requested"]["device_bytes"] == direct.requested.device_bytes
    assert got["largest_batch"] == direct.largest_batch
    assert job["result"]["report"]["device"] == "cuda"


def test_bad_setups_are_422_with_a_message(gpu_client: TestClient) -> None:
    for body, words in (
        ({"model": "gpt-tiny", "gpu": "rtx-9999"}, "unknown GPU"),
        ({"model": "gpt-tiny", "sharding": "fsdp"}, "world_size"),
        ({"model": "gpt-tiny", "batch_size": 8, "accumulation_steps": 3}, "divisible"),
        ({"model": "gpt-tiny", "precision": "int4"}, "precision"),
        ({"model": "gpt-tiny", "gpu": "12", "device": "cuda"}, "estimates"),
    ):
        resp = gpu_client.post("/api/profile", json=body)
        assert resp.status_code == 422, (body, resp.text)
        assert words in resp.text, (body, resp.text)
