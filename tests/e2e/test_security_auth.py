"""Auth that cannot be left off by accident, attacked through real service processes.

Each test starts ``python -m <service>`` as an operator would, with the careless setting, and
checks what an attacker would see: an open port, a key in the log, an open /metrics.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.e2e.harness import ROOT, StartService, free_port

SERVICES = [("pose_analyzer", "POSE_"), ("gpu_optimizer", "GPUOPT_")]
PROTECTED = ["/metrics", "/docs", "/redoc", "/openapi.json", "/api/status/version"]


def run_until_exit(module: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``python -m module``; a service that wrongly starts is killed by the timeout (and fails)."""
    return subprocess.run(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def status_of(url: str, key: str | None = None) -> int:
    headers = {} if key is None else {"X-API-Key": key}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def gpu_env(tmp_path: Path) -> dict[str, str]:
    return {"database_url": f"sqlite:///{tmp_path}/gpu.db", "checkpoint_root": str(tmp_path / "ckpt")}


@pytest.mark.parametrize(("module", "prefix"), SERVICES)
def test_an_empty_key_is_a_startup_error(module: str, prefix: str, tmp_path: Path) -> None:
    port = free_port()
    done = run_until_exit(
        module,
        {f"{prefix}API_KEY": "", f"{prefix}PORT": str(port), f"{prefix}LOG_DIR": str(tmp_path)},
        tmp_path,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"{prefix}API_KEY" in done.stderr
    assert "empty" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("module", "prefix"), SERVICES)
def test_a_public_bind_without_a_key_refuses_to_start(module: str, prefix: str, tmp_path: Path) -> None:
    env = {f"{prefix}HOST": "0.0.0.0", f"{prefix}PORT": str(free_port()), f"{prefix}LOG_DIR": str(tmp_path)}
    env.pop(f"{prefix}API_KEY", None)
    done = run_until_exit(module, {**env, f"{prefix}ALLOW_ANONYMOUS": "false"}, tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "0.0.0.0" in done.stderr
    assert f"{prefix}ALLOW_ANONYMOUS" in done.stderr


def test_a_public_bind_with_allow_anonymous_starts(start_service: StartService, tmp_path: Path) -> None:
    service = start_service(
        "gpu_optimizer", "GPUOPT_", host="0.0.0.0", allow_anonymous="true", **gpu_env(tmp_path)
    )
    assert status_of(f"{service.url}/api/gpus") == 200
    assert status_of(f"{service.url}/metrics") == 200


def test_protected_endpoints_ask_for_the_key_on_a_public_bind(
    start_service: StartService, tmp_path: Path
) -> None:
    key = "public-bind-key-5b1d"
    service = start_service("gpu_optimizer", "GPUOPT_", host="0.0.0.0", api_key=key, **gpu_env(tmp_path))
    for path in PROTECTED:
        assert status_of(f"{service.url}{path}") == 401, path
        assert status_of(f"{service.url}{path}", "wrong") == 401, path
        assert status_of(f"{service.url}{path}", key) == 200, path
    assert status_of(f"{service.url}/healthz") == 200
    assert status_of(f"{service.url}/readyz") == 200


def test_a_query_string_key_never_reaches_the_logs(start_service: StartService, tmp_path: Path) -> None:
    key = "QueryKey-7c9e21d4"
    service = start_service(
        "pose_analyzer",
        "POSE_",
        api_key=key,
        protect_ops_endpoints="true",
        backend="mediapipe",
        database_url=f"sqlite:///{tmp_path}/pose.db",
    )
    for path in PROTECTED:
        assert status_of(f"{service.url}{path}") == 401, path
    assert status_of(f"{service.url}/api/exercises?api_key={key}") == 200
    assert status_of(f"{service.url}/metrics?x=1&api_key={key}") == 200
    assert status_of(f"{service.url}/api/exercises?api%5Fkey={key}") == 200
    ws = service.url.replace("http://", "ws://")
    with connect(f"{ws}/ws/streams/cam1?api_key={key}"):
        pass  # uvicorn logs the request line on accept, open and close
    with connect(f"{ws}/ws/streams/cam2?api_key=not-{key}") as refused, pytest.raises(ConnectionClosed):
        refused.recv(timeout=30)
    service.stop()
    log_file = tmp_path / "logs" / "pose_analyzer.log"
    logged = log_file.read_text() + service.log.read_text()
    assert "/api/exercises?api_key=<redacted>" in logged, "the access log should still show the request"
    assert "/ws/streams/cam1?api_key=<redacted>" in logged
    assert key not in logged
