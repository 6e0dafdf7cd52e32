"""Checkpoint endpoints over checkpoints written by the real CheckpointManager."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from gpu_optimizer.app import create_app
from gpu_optimizer.checkpoints import CheckpointManager
from gpu_optimizer.settings import GpuOptSettings


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "ckpt"
    model = torch.nn.Linear(8, 4)
    opt = torch.optim.AdamW(model.parameters())
    manager = CheckpointManager(root, "run-a", keep_last=None)
    for step, loss in ((10, 0.9), (20, 0.5), (30, 0.7), (40, 0.6)):
        manager.save(step, model, opt, metrics={"loss": loss}, epoch=step // 10)
    CheckpointManager(root, "run-b", keep_last=None).save(1, model)
    return root


@pytest.fixture
def client(root: Path, tmp_path: Path) -> Iterator[TestClient]:
    settings = GpuOptSettings(log_dir=None, checkpoint_root=root, database_url=f"sqlite:///{tmp_path}/g.db")
    with TestClient(create_app(settings)) as c:
        yield c


def test_list_runs_and_checkpoints(client: TestClient) -> None:
    runs = client.get("/api/checkpoints").json()
    assert [r["run"] for r in runs] == ["run-a", "run-b"]
    run_a = runs[0]
    assert [c["step"] for c in run_a["checkpoints"]] == [10, 20, 30, 40]
    assert run_a["checkpoints"][1]["metrics"] == {"loss": 0.5}
    assert all(c["verified"] is None for c in run_a["checkpoints"])
    assert run_a["size_bytes"] == sum(c["size_bytes"] for c in run_a["checkpoints"]) > 0
    verified = client.get("/api/checkpoints/run-a", params={"verify": "true"}).json()
    assert all(c["verified"] is True for c in verified["checkpoints"])


def test_verify_detects_a_flipped_byte(client: TestClient, root: Path) -> None:
    name = client.get("/api/checkpoints/run-a").json()["checkpoints"][0]["name"]
    ok = client.post(f"/api/checkpoints/run-a/{name}/verify").json()
    assert ok["ok"] is True
    victim = next(p for p in (root / "run-a" / name).iterdir() if p.suffix == ".safetensors")
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    bad = client.post(f"/api/checkpoints/run-a/{name}/verify").json()
    assert bad["ok"] is False
    assert victim.name in bad["mismatched"]


def test_prune_keeps_last_and_best(client: TestClient) -> None:
    resp = client.post(
        "/api/checkpoints/run-a/prune",
        json={"keep_last": 1, "keep_best": 1, "best_metric": "loss", "mode": "min"},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    steps = [c["step"] for c in client.get("/api/checkpoints/run-a").json()["checkpoints"]]
    assert steps == [20, 40]
    assert len(body["removed"]) == 2
    assert len(body["kept"]) == 2


def test_delete_and_not_found(client: TestClient) -> None:
    name = client.get("/api/checkpoints/run-b").json()["checkpoints"][0]["name"]
    assert client.delete(f"/api/checkpoints/run-b/{name}").status_code == 204
    assert client.get("/api/checkpoints/run-b").json()["checkpoints"] == []
    missing = client.delete(f"/api/checkpoints/run-b/{name}")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert client.get("/api/checkpoints/nope").status_code == 404


def test_manifestless_directory_needs_force(client: TestClient, root: Path) -> None:
    half = root / "run-b" / "step-half"
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"partial")
    assert client.delete("/api/checkpoints/run-b/step-half").status_code == 409
    assert half.exists()
    assert client.delete("/api/checkpoints/run-b/step-half", params={"force": "true"}).status_code == 204
    assert not half.exists()


@pytest.mark.parametrize(
    "path",
    [
        "/api/checkpoints/..",
        "/api/checkpoints/.hidden",
        "/api/checkpoints/a%2F..%2Fb",
        "/api/checkpoints/run-a/..%2F..%2Fetc/verify",
    ],
)
def test_names_cannot_leave_the_root(client: TestClient, path: str) -> None:
    resp = client.get(path) if not path.endswith("verify") else client.post(path)
    assert resp.status_code in (404, 422)
    assert "error" in resp.json()


def test_bad_prune_policies_are_422(client: TestClient) -> None:
    for policy in (
        {"keep_best": 1},
        {"keep_last": 0, "keep_best": 0},
        {"keep_last": -1},
        {"mode": "sideways"},
    ):
        resp = client.post("/api/checkpoints/run-a/prune", json=policy)
        assert resp.status_code == 422, policy


def test_checkpoint_metrics(client: TestClient) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    name = client.get("/api/checkpoints/run-a").json()["checkpoints"][0]["name"]
    client.post(f"/api/checkpoints/run-a/{name}/verify")
    samples = {
        (s.name, s.labels.get("run")): s.value
        for f in text_string_to_metric_families(client.get("/metrics").text)
        for s in f.samples
    }
    assert samples[("gpuopt_checkpoints", "run-a")] == 4
    assert samples[("gpuopt_checkpoints", "run-b")] == 1
    assert samples[("gpuopt_checkpoint_latest_step", "run-a")] == 40
    assert samples[("gpuopt_checkpoint_last_save_seconds", "run-a")] > 0
    assert samples[("gpuopt_checkpoint_verified_bytes_total", None)] > 0
    assert samples[("gpuopt_checkpoint_verify_seconds_count", None)] == 1
