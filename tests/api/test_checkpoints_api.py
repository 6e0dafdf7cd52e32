"""Checkpoint endpoints over checkpoints written by the real CheckpointManager."""

from __future__ import annotations

import json
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


def _outside(tmp_path: Path) -> Path:
    """A run of real checkpoints outside the root, the target of the planted links."""
    manager = CheckpointManager(tmp_path / "outside", "victim", keep_last=None)
    for step in range(3):
        manager.save(step, torch.nn.Linear(8, 4), metrics={"loss": 0.1 * step})
    return tmp_path / "outside" / "victim"


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_run_linked_outside_the_root_is_not_listed_read_pruned_or_deleted(
    client: TestClient, root: Path, tmp_path: Path
) -> None:
    outside = _outside(tmp_path)
    (root / "evil").symlink_to(outside, target_is_directory=True)
    before = _files(outside)

    assert [r["run"] for r in client.get("/api/checkpoints").json()] == ["run-a", "run-b"]
    for resp in (
        client.get("/api/checkpoints/evil"),
        client.post("/api/checkpoints/evil/prune", json={"keep_last": 1}),
        client.delete("/api/checkpoints/evil/step-000000000"),
        client.delete("/api/checkpoints/evil/step-000000001", params={"force": "true"}),
        client.post("/api/checkpoints/evil/step-000000002/verify"),
    ):
        assert resp.status_code == 409, resp.text
        assert resp.json()["error"]["code"] == "unsafe_path"
    assert _files(outside) == before


def test_a_checkpoint_linked_outside_is_listed_invalid_and_never_deleted(
    client: TestClient, root: Path, tmp_path: Path
) -> None:
    outside = _outside(tmp_path)
    (root / "run-b" / "step-linked").symlink_to(outside / "step-000000001", target_is_directory=True)
    before = _files(outside)

    run_b = client.get("/api/checkpoints/run-b").json()
    assert [c["step"] for c in run_b["checkpoints"]] == [1]
    assert [i["name"] for i in run_b["invalid"]] == ["step-linked"]
    assert "symbolic link" in run_b["invalid"][0]["error"]
    for params in ({}, {"force": "true"}):
        resp = client.delete("/api/checkpoints/run-b/step-linked", params=params)
        assert resp.status_code == 409
        assert resp.json()["error"]["code"] == "unsafe_path"
    assert client.post("/api/checkpoints/run-b/step-linked/verify").status_code == 409
    assert client.post("/api/checkpoints/run-b/prune", json={"keep_last": 1}).status_code == 200
    assert _files(outside) == before
    assert (root / "run-b" / "step-linked").is_symlink()


@pytest.mark.parametrize("planted", ["/etc/hostname", "../../../outside-secret", "../../../no-such-file"])
def test_verify_never_reports_on_paths_outside_the_checkpoint(
    client: TestClient, root: Path, tmp_path: Path, planted: str
) -> None:
    (tmp_path / "outside-secret").write_text("secret")
    name = "step-000000020"
    manifest = root / "run-a" / name / "MANIFEST.json"
    body = json.loads(manifest.read_text())
    body["files"][planted] = {body["hash"]: "0" * 64, "size": 6}
    manifest.write_text(json.dumps(body))

    result = client.post(f"/api/checkpoints/run-a/{name}/verify")
    assert result.status_code == 200
    verdict = result.json()
    assert verdict["ok"] is False
    assert (verdict["mismatched"], verdict["missing"]) == ([], [])
    assert "invalid manifest" in verdict["error"]
    assert "secret" not in result.text
    assert "hostname" not in result.text
    listing = client.get("/api/checkpoints/run-a").json()
    assert name not in [c["name"] for c in listing["checkpoints"]]
    assert [i["name"] for i in listing["invalid"]] == [name]
    assert (tmp_path / "outside-secret").read_text() == "secret"


def test_a_step_of_1e400_makes_one_checkpoint_invalid_not_the_service_fail(
    client: TestClient, root: Path
) -> None:
    name = "step-000000030"
    manifest = root / "run-a" / name / "MANIFEST.json"
    manifest.write_text(manifest.read_text().replace('"step": 30,', '"step": 1e400,'))
    assert "1e400" in manifest.read_text()

    listing = client.get("/api/checkpoints")
    assert listing.status_code == 200
    run_a = listing.json()[0]
    assert [c["step"] for c in run_a["checkpoints"]] == [10, 20, 40]
    (invalid,) = run_a["invalid"]
    assert invalid["name"] == name
    assert "step" in invalid["error"]
    assert client.get("/api/checkpoints/run-a", params={"verify": "true"}).status_code == 200
    verify = client.post(f"/api/checkpoints/run-a/{name}/verify")
    assert verify.status_code == 200
    assert verify.json()["ok"] is False
    refused = client.delete(f"/api/checkpoints/run-a/{name}")
    assert refused.status_code == 409
    assert "Overflow" not in refused.text
    assert client.delete(f"/api/checkpoints/run-a/{name}", params={"force": "true"}).status_code == 204
    assert not (root / "run-a" / name).exists()
    assert client.get("/api/checkpoints/run-a").json()["invalid"] == []


def test_prune_keeps_the_best_loss_when_one_is_nan(client: TestClient, root: Path) -> None:
    manager = CheckpointManager(root, "nan-run", keep_last=None)
    for step, loss in enumerate([0.5, float("nan"), 0.3, 0.9]):
        manager.save(step, torch.nn.Linear(8, 4), metrics={"loss": loss})
    listed = client.get("/api/checkpoints/nan-run")
    assert listed.status_code == 200
    assert [c["metrics"]["loss"] for c in listed.json()["checkpoints"]] == [0.5, None, 0.3, 0.9]

    resp = client.post(
        "/api/checkpoints/nan-run/prune", json={"keep_last": 0, "keep_best": 1, "best_metric": "loss"}
    )
    assert resp.status_code == 200, resp.text
    (kept,) = client.get("/api/checkpoints/nan-run").json()["checkpoints"]
    assert (kept["step"], kept["metrics"]) == (2, {"loss": 0.3})


def test_listing_names_the_hash_of_each_checkpoint(client: TestClient) -> None:
    run_a = client.get("/api/checkpoints/run-a").json()
    assert {c["hash"] for c in run_a["checkpoints"]} == {"blake3"}
