"""gpu_optimizer as a real process: swap pools reported by a training process over HTTP."""

from __future__ import annotations

from pathlib import Path

import torch

from gpu_optimizer.swap_pools import SwapPoolReporter
from gpu_optimizer.swapping import TensorSwapper
from tests.e2e.harness import StartService, free_port, http_json


def test_training_process_reports_its_swap_pool(start_service: StartService, tmp_path: Path) -> None:
    service = start_service(
        "gpu_optimizer",
        "GPUOPT_",
        database_url=f"sqlite:///{tmp_path}/gpu.db",
        checkpoint_root=str(tmp_path / "ckpt"),
    )
    with TensorSwapper(
        device_budget=1 << 20, host_budget=1 << 20, swap_dir=tmp_path / "swap", device="cpu"
    ) as sw:
        reporter = SwapPoolReporter(sw.stats, service.url, "trainer.0", interval_s=0.2).start()
        for i in range(6):
            sw.register(f"w{i}", torch.randn(1 << 18))
        for i in range(6):
            sw.get(f"w{i}")
        reporter.stop()
        expected = sw.stats()
    assert reporter.sent >= 2
    assert reporter.failures == 0
    status, pool = http_json("GET", f"{service.url}/api/swap-pools/trainer.0")
    assert status == 200
    assert isinstance(pool, dict)
    assert pool["bytes_moved"] == expected["bytes_moved"]
    assert pool["tiers"]["disk"]["swaps_out"] == expected["tiers"]["disk"]["swaps_out"] > 0


def test_reporter_survives_a_service_that_is_down(tmp_path: Path) -> None:
    reporter = SwapPoolReporter(
        lambda: {"tiers": {}}, f"http://127.0.0.1:{free_port()}", "x", interval_s=0.05
    )
    assert reporter.send_once() is False
    assert reporter.failures == 1
