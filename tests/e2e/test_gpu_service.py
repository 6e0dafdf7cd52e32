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


def test_profiling_job_on_the_real_server_matches_the_engine(
    start_service: StartService, tmp_path: Path
) -> None:
    import time

    from gpu_optimizer.profiling.models import get_model_spec
    from gpu_optimizer.profiling.runs import profile

    service = start_service(
        "gpu_optimizer",
        "GPUOPT_",
        database_url=f"sqlite:///{tmp_path}/gpu.db",
        checkpoint_root=str(tmp_path / "ckpt"),
    )
    body = {"model": "gpt-tiny", "batch_size": 2, "dtype": "float32", "optimizer": "adamw"}
    status, job = http_json("POST", f"{service.url}/api/profile", body)
    assert status == 202
    assert isinstance(job, dict)
    deadline = time.monotonic() + 300
    while job["state"] not in ("succeeded", "failed") and time.monotonic() < deadline:
        time.sleep(0.5)
        _, job = http_json("GET", f"{service.url}/api/jobs/{job['id']}")
        assert isinstance(job, dict)
    assert job["state"] == "succeeded", job.get("error")
    direct = profile(get_model_spec("gpt-tiny"), batch_size=2).to_dict()
    served = job["result"]["report"]
    for key in (
        "peak_bytes",
        "parameter_bytes",
        "gradient_bytes",
        "optimizer_state_bytes",
        "activation_bytes",
    ):
        assert served[key] == direct[key], key
    assert [r["kind"] for r in served["recommendations"]] == [r["kind"] for r in direct["recommendations"]]
    _, jobs = http_json("GET", f"{service.url}/api/jobs")
    assert isinstance(jobs, list)
    assert [j["id"] for j in jobs] == [job["id"]]
