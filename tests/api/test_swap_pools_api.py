"""Swap pools: a real TensorSwapper's stats travel to the service and come back as JSON and metrics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from gpu_optimizer.app import create_app
from gpu_optimizer.settings import GpuOptSettings
from gpu_optimizer.swapping import TensorSwapper


def swapper_stats(tmp_path: Path) -> dict[str, Any]:
    """Stats of a real swapper after pushing 4 MiB through a 1 MiB device and 1 MiB host budget."""
    with TensorSwapper(
        device_budget=1 << 20, host_budget=1 << 20, swap_dir=tmp_path / "swap", device="cpu"
    ) as sw:
        for i in range(4):
            sw.register(f"t{i}", torch.full((1 << 18,), float(i)))
        for i in range(4):
            assert torch.equal(sw.get(f"t{i}"), torch.full((1 << 18,), float(i)))
        return sw.stats()


def test_report_list_get_delete(gpu_client: TestClient, tmp_path: Path) -> None:
    stats = swapper_stats(tmp_path)
    body = {**stats, "pid": 4242, "hostname": "trainer-1"}
    put = gpu_client.put("/api/swap-pools/run-7.pool", json=body)
    assert put.status_code == 200, put.text
    listed = gpu_client.get("/api/swap-pools").json()
    assert [p["name"] for p in listed] == ["run-7.pool"]
    pool = gpu_client.get("/api/swap-pools/run-7.pool").json()
    assert pool["tiers"]["disk"]["swaps_in"] == stats["tiers"]["disk"]["swaps_in"]
    assert pool["bytes_moved"] == stats["bytes_moved"] > 0
    assert pool["stale"] is False

    families = {f.name: f for f in text_string_to_metric_families(gpu_client.get("/metrics").text)}
    moved = {s.name: s.value for s in families["gpuopt_swap_moved_bytes"].samples}
    assert moved["gpuopt_swap_moved_bytes_total"] == stats["bytes_moved"]
    swaps = {
        (s.labels["tier"], s.labels["direction"]): s.value
        for s in families["gpuopt_swaps"].samples
        if s.name.endswith("_total")
    }
    assert swaps[("disk", "out")] == stats["tiers"]["disk"]["swaps_out"]

    assert gpu_client.delete("/api/swap-pools/run-7.pool").status_code == 204
    assert gpu_client.get("/api/swap-pools/run-7.pool").status_code == 404
    assert gpu_client.delete("/api/swap-pools/run-7.pool").status_code == 404


def test_bad_reports_and_names_are_4xx(gpu_client: TestClient, tmp_path: Path) -> None:
    good = {**swapper_stats(tmp_path), "pid": 1, "hostname": "h"}
    assert gpu_client.put("/api/swap-pools/..", json=good).status_code in (404, 422)
    assert gpu_client.put("/api/swap-pools/a%2Fb", json=good).status_code in (404, 422)
    bad_tier = {**good, "tiers": {"gpu9": good["tiers"]["device"]}}
    resp = gpu_client.put("/api/swap-pools/p", json=bad_tier)
    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "validation_error"
    negative = {**good, "bytes_moved": -1}
    assert gpu_client.put("/api/swap-pools/p", json=negative).status_code == 422
    assert (
        gpu_client.put(
            "/api/swap-pools/p", content=b"not json", headers={"content-type": "application/json"}
        ).status_code
        == 422
    )


@pytest.fixture
def small_client(tmp_path: Path) -> Iterator[TestClient]:
    settings = GpuOptSettings(
        log_dir=None,
        checkpoint_root=tmp_path / "ckpt",
        database_url=f"sqlite:///{tmp_path}/gpu.db",
        swap_pools_max=20,
        swap_pools_per_process=5,
    )
    with TestClient(create_app(settings)) as client:
        yield client


def raw_put(client: TestClient, name: str, text: str) -> Any:
    return client.put(f"/api/swap-pools/{name}", content=text, headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    ("field", "literal"),
    [
        ("move_seconds", "Infinity"),
        ("throughput_bytes_per_s", "NaN"),
        ("throughput_bytes_per_s", "-Infinity"),
        ("move_seconds", "1e40"),
        ("bytes_moved", "1e40"),
        ("bytes_moved", "10000000000000000000000000000000000000000"),
        ("host_pool_bytes", "1e40"),
    ],
)
def test_non_finite_and_absurd_numbers_are_refused(
    gpu_client: TestClient, tmp_path: Path, field: str, literal: str
) -> None:
    good = {**swapper_stats(tmp_path), "pid": 1, "hostname": "h"}
    text = json.dumps({**good, field: 0}).replace(f'"{field}": 0', f'"{field}": {literal}')
    resp = raw_put(gpu_client, "p", text)
    assert resp.status_code == 422, resp.text
    assert gpu_client.get("/api/swap-pools").json() == []
    assert "Infinity" not in gpu_client.get("/metrics").text


def test_absurd_tier_sizes_are_refused(gpu_client: TestClient, tmp_path: Path) -> None:
    good = {**swapper_stats(tmp_path), "pid": 1, "hostname": "h"}
    tiers = {**good["tiers"], "disk": {**good["tiers"]["disk"], "bytes": 10**40}}
    resp = gpu_client.put("/api/swap-pools/p", json={**good, "tiers": tiers})
    assert resp.status_code == 422
    assert resp.json()["error"]["details"][0]["loc"] == ["body", "tiers", "disk", "bytes"]


def test_thousands_of_pool_names_are_capped_and_metrics_stay_bounded(
    small_client: TestClient, tmp_path: Path
) -> None:
    stats = swapper_stats(tmp_path)
    codes = [
        small_client.put(
            f"/api/swap-pools/p{i}", json={**stats, "pid": 1 + i // 5, "hostname": "h"}
        ).status_code
        for i in range(3000)
    ]
    assert codes[:20] == [200] * 20
    assert set(codes[20:]) == {409}
    assert len(small_client.get("/api/swap-pools").json()) == 20
    metrics = small_client.get("/metrics").text
    assert metrics.count('gpuopt_swap_moved_bytes_total{pool="') == 20
    one_process = [
        small_client.put(f"/api/swap-pools/q{i}", json={**stats, "pid": 99, "hostname": "h2"})
        for i in range(6)
    ]
    assert {r.status_code for r in one_process} == {409}, "the registry is full"
    small_client.delete("/api/swap-pools/p0")
    small_client.delete("/api/swap-pools/p5")
    per_process = [
        small_client.put(f"/api/swap-pools/r{i}", json={**stats, "pid": 2, "hostname": "h"}).status_code
        for i in range(2)
    ]
    assert per_process == [200, 409], "pid 2 on h had 4 pools after the delete; a 6th is one too many"
    assert (
        small_client.put("/api/swap-pools/p0", json={**stats, "pid": 1, "hostname": "h"}).status_code == 200
    )


def test_a_known_pool_keeps_reporting_at_the_cap(small_client: TestClient, tmp_path: Path) -> None:
    stats = swapper_stats(tmp_path)
    for i in range(5):
        assert (
            small_client.put(f"/api/swap-pools/p{i}", json={**stats, "pid": 7, "hostname": "h"}).status_code
            == 200
        )
    for _ in range(3):
        assert (
            small_client.put("/api/swap-pools/p4", json={**stats, "pid": 7, "hostname": "h"}).status_code
            == 200
        )


def test_a_50_mb_body_is_refused_with_413(gpu_client: TestClient, tmp_path: Path) -> None:
    good = {**swapper_stats(tmp_path), "pid": 1, "hostname": "h"}
    huge = json.dumps({**good, "padding": "x" * (50 * 1024 * 1024)})
    resp = raw_put(gpu_client, "p", huge)
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield huge[:1000].encode()
        for _ in range(50):
            yield b" " * (1024 * 1024)

    chunked = gpu_client.put(
        "/api/swap-pools/p", content=chunks(), headers={"content-type": "application/json"}
    )
    assert chunked.status_code == 413
    assert gpu_client.get("/api/swap-pools").json() == []
