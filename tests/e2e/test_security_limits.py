"""Bounded work in gpu_optimizer, attacked through a real process: huge bodies and a job flood."""

from __future__ import annotations

import http.client
import json
import urllib.parse
from pathlib import Path

from tests.e2e.harness import RunningService, StartService, http_json


def start(start_service: StartService, tmp_path: Path) -> RunningService:
    return start_service(
        "gpu_optimizer",
        "GPUOPT_",
        database_url=f"sqlite:///{tmp_path}/gpu.db",
        checkpoint_root=str(tmp_path / "ckpt"),
        job_queue_size="4",
    )


def connection(service: RunningService) -> http.client.HTTPConnection:
    url = urllib.parse.urlsplit(service.url)
    return http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)


def test_a_declared_50_mb_body_is_refused_before_it_is_sent(
    start_service: StartService, tmp_path: Path
) -> None:
    service = start(start_service, tmp_path)
    conn = connection(service)
    conn.putrequest("PUT", "/api/swap-pools/big")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(50 * 1024 * 1024))
    conn.endheaders()  # and not one byte of the body: the service must answer without waiting for it
    response = conn.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["error"]["code"] == "payload_too_large"
    conn.close()


def test_a_chunked_body_is_cut_off_at_the_limit(start_service: StartService, tmp_path: Path) -> None:
    service = start(start_service, tmp_path)
    conn = connection(service)
    conn.putrequest("PUT", "/api/swap-pools/big")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    chunk = b"[" + b" " * (32 * 1024 - 1)
    for _ in range(3):  # 96 KiB of a body that never ends, over the 64 KiB limit
        conn.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    response = conn.getresponse()
    assert response.status == 413
    conn.close()
    status, pools = http_json("GET", f"{service.url}/api/swap-pools")
    assert (status, pools) == (200, [])


def test_a_flood_of_profiling_jobs_is_refused(start_service: StartService, tmp_path: Path) -> None:
    service = start(start_service, tmp_path)
    job = {"model": "resnet50", "batch_size": 8, "find_batch": {"budget_gb": 8}}
    accepted, refused = 0, 0
    for _ in range(200):
        conn = connection(service)
        conn.request("POST", "/api/profile", json.dumps(job), {"Content-Type": "application/json"})
        response = conn.getresponse()
        body = json.loads(response.read())
        if response.status == 202:
            accepted += 1
        else:
            assert response.status == 429, body
            assert int(response.getheader("Retry-After") or 0) >= 1
            refused += 1
        conn.close()
    status, jobs = http_json("GET", f"{service.url}/api/jobs?limit=1000")
    assert status == 200
    assert isinstance(jobs, list)
    assert len(jobs) == accepted, "a refused job leaves no trace"
    assert refused > 100, f"{accepted} accepted with a queue of 4"
