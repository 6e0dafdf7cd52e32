"""Training runs registry: reports are stored in SQL, listed, and exported as bounded metrics."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

REPORT = {
    "status": "running",
    "step": 120,
    "max_steps": 500,
    "loss": 0.42,
    "samples_per_s": 812.5,
    "oom_events": 1,
    "rollbacks": 2,
    "restarts": 3,
    "world_size": 2,
    "micro_batch": 16,
    "config_digest": "ab12cd34ef56ab78",
    "eval": {"accuracy": 0.93},
}


def _samples(client: TestClient) -> dict[tuple[str, str], float]:
    out = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for s in family.samples:
            if s.name.startswith("gpuopt_training_"):
                out[(s.name, s.labels.get("run", ""))] = s.value
    return out


def test_put_list_get_and_metrics(gpu_client: TestClient) -> None:
    assert gpu_client.get("/api/runs").json() == []
    put = gpu_client.put("/api/runs/digits-1", json=REPORT)
    assert put.status_code == 200, put.text
    assert put.json()["step"] == 120
    later = {**REPORT, "step": 130, "loss": None}
    assert gpu_client.put("/api/runs/digits-1", json=later).status_code == 200
    gpu_client.put("/api/runs/other", json={**REPORT, "status": "finished"})

    listed = gpu_client.get("/api/runs").json()
    assert [r["name"] for r in listed] == ["other", "digits-1"]
    run = gpu_client.get("/api/runs/digits-1").json()
    assert run["step"] == 130
    assert run["loss"] is None
    assert run["eval"] == {"accuracy": 0.93}
    assert run["created_at"] <= run["updated_at"]
    # Seen running twice since its first report (step 120); "other" was never reported running.
    assert (run["first_step"], run["running_reports"]) == (120, 2)
    assert run["created_at"] == run["started_at"]
    other = gpu_client.get("/api/runs/other").json()
    assert (other["started_at"], other["first_step"], other["running_reports"]) == (None, None, 0)
    assert [r["name"] for r in gpu_client.get("/api/runs", params={"status": "finished"}).json()] == ["other"]

    samples = _samples(gpu_client)
    assert samples[("gpuopt_training_step", "digits-1")] == 130
    assert ("gpuopt_training_loss", "digits-1") not in samples
    assert samples[("gpuopt_training_loss", "other")] == 0.42
    assert samples[("gpuopt_training_oom_events_total", "digits-1")] == 1
    assert samples[("gpuopt_training_rollbacks_total", "digits-1")] == 2
    assert samples[("gpuopt_training_restarts_total", "digits-1")] == 3
    assert samples[("gpuopt_training_samples_per_second", "digits-1")] == 812.5
    assert samples[("gpuopt_training_running", "digits-1")] == 1
    assert samples[("gpuopt_training_running", "other")] == 0


def test_bad_names_and_reports_are_4xx_with_a_message(gpu_client: TestClient) -> None:
    assert gpu_client.put("/api/runs/..", json=REPORT).status_code in (404, 422)
    assert gpu_client.put("/api/runs/a%2Fb", json=REPORT).status_code in (404, 422)
    assert gpu_client.put("/api/runs/" + "x" * 65, json=REPORT).status_code == 422
    for bad in ({"status": "exploded"}, {"step": -1}, {"unknown": 1}, {"world_size": 0}):
        resp = gpu_client.put("/api/runs/r", json={**REPORT, **bad})
        assert resp.status_code == 422, bad
        assert "Traceback" not in resp.text
    assert gpu_client.get("/api/runs/never").status_code == 404
    assert gpu_client.get("/api/runs", params={"limit": 0}).status_code == 422


def test_runs_survive_a_service_restart(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from gpu_optimizer.app import create_app
    from gpu_optimizer.settings import GpuOptSettings

    settings = GpuOptSettings(
        log_dir=tmp_path / "logs",
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        checkpoint_root=tmp_path / "c",
    )
    with TestClient(create_app(settings)) as client:
        assert client.put("/api/runs/keep", json=REPORT).status_code == 200
    with TestClient(create_app(settings)) as client:
        assert client.get("/api/runs/keep").json()["step"] == 120


def test_metrics_label_only_the_most_recent_runs(gpu_client: TestClient) -> None:
    for i in range(25):
        gpu_client.put(f"/api/runs/r{i:02d}", json={**REPORT, "step": i})
    runs = {run for (name, run) in _samples(gpu_client) if name == "gpuopt_training_step"}
    assert runs == {f"r{i:02d}" for i in range(5, 25)}


def test_reports_with_numbers_no_store_can_hold_are_refused_with_422(gpu_client: TestClient) -> None:
    """Found by the fuzzer: a count past int64 reached the database and answered 500."""
    for bad in (
        {"oom_events": 2**65},
        {"step": 2**63},
        {"samples_per_s": 6.5e307},
        {"eval": {"": 1.0}},
    ):
        response = gpu_client.put("/api/runs/fuzzed", json={"status": "running", **bad})
        assert response.status_code == 422, (bad, response.text)
    assert gpu_client.get("/api/runs/fuzzed").status_code == 404
