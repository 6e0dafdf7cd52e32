"""Swap pools: a real TensorSwapper's stats travel to the service and come back as JSON and metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

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
