"""scripts/validate_env.py run as a user runs it, on this real machine."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from service_kit.nvml import read_inventory

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "validate_env.py"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **(env or {})},
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def report() -> dict:  # type: ignore[type-arg]
    done = run("--json", env={"POSE_PORT": str(free_port()), "GPUOPT_PORT": str(free_port())})
    assert done.returncode in (0, 1), done.stderr
    data = json.loads(done.stdout)
    data["returncode"] = done.returncode
    return data  # type: ignore[no-any-return]


def test_json_has_every_check(report: dict) -> None:  # type: ignore[type-arg]
    names = {c["name"] for c in report["checks"]}
    for required in (
        "python",
        "torch",
        "cuda runtime",
        "ram",
        "free disk",
        "import torch",
        "import mediapipe",
        "import pose_analyzer",
        "mediapipe pose model",
        "yolo11n-pose weights",
    ):
        assert required in names, f"missing check {required}"
    assert sum(n.startswith("port ") for n in names) == 2
    for check in report["checks"]:
        assert check["status"] in {"pass", "warn", "fail", "info"}
        if check["status"] == "fail":
            assert check["fix"], f"{check['name']} fails without a fix"


def test_this_machine_passes(report: dict) -> None:  # type: ignore[type-arg]
    failures = [c for c in report["checks"] if c["status"] == "fail"]
    assert report["ok"] is True, failures
    assert report["returncode"] == 0


def test_cpu_mode_line_or_gpu_rows_match_nvml(report: dict) -> None:  # type: ignore[type-arg]
    inventory = read_inventory()
    rows = {c["name"]: c for c in report["checks"]}
    if inventory.gpus:
        assert all(f"gpu {g.index}" in rows for g in inventory.gpus)
    else:
        assert rows["gpu"]["value"].startswith("CPU mode")
        assert rows["gpu"]["status"] == "pass"


def test_require_gpu_fails_exactly_when_there_is_no_gpu() -> None:
    done = run(
        "--json", "--require-gpu", env={"POSE_PORT": str(free_port()), "GPUOPT_PORT": str(free_port())}
    )
    data = json.loads(done.stdout)
    has_gpu = bool(read_inventory().gpus)
    assert data["ok"] is has_gpu
    assert done.returncode == (0 if has_gpu else 1)
    if not has_gpu:
        gpu = next(c for c in data["checks"] if c["name"] == "gpu")
        assert gpu["status"] == "fail"
        assert gpu["fix"]


class _Foreign(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"service": "somebody-else"}')

    def log_message(self, *args: object) -> None:
        pass


def test_port_held_by_a_foreign_program_fails_with_a_fix() -> None:
    server = HTTPServer(("127.0.0.1", 0), _Foreign)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        done = run("--json", env={"POSE_PORT": str(port), "GPUOPT_PORT": str(free_port())})
    finally:
        server.shutdown()
        server.server_close()
    data = json.loads(done.stdout)
    row = next(c for c in data["checks"] if c["name"] == f"port {port}")
    assert row["status"] == "fail"
    assert "POSE_PORT" in row["fix"]
    assert done.returncode == 1


def test_human_table_is_printed() -> None:
    done = run(env={"POSE_PORT": str(free_port()), "GPUOPT_PORT": str(free_port())})
    assert "ai-ml-pipeline environment" in done.stdout
    assert "ready" in done.stdout
