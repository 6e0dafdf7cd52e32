"""`make run-all` / `make stop-all` behaviour through scripts/services.py, with real processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "services.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {
        **os.environ,
        "AIML_LOG_DIR": str(tmp_path / "logs"),
        "POSE_PORT": str(free_port()),
        "GPUOPT_PORT": str(free_port()),
        "POSE_BACKEND": "mediapipe",
        "POSE_DATABASE_URL": f"sqlite:///{tmp_path}/pose.db",
        "GPUOPT_DATABASE_URL": f"sqlite:///{tmp_path}/gpu.db",
        "GPUOPT_CHECKPOINT_ROOT": str(tmp_path / "ckpt"),
    }
    yield env
    subprocess.run([sys.executable, str(SCRIPT), "stop"], env=env, capture_output=True, timeout=60)


def services(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), command], env=env, capture_output=True, text=True, timeout=180
    )


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "zombie" not in status.lower()


def get(url: str) -> dict:  # type: ignore[type-arg]
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)  # type: ignore[no-any-return]


def test_run_all_starts_both_and_stop_all_stops_exactly_them(env: dict[str, str], tmp_path: Path) -> None:
    started = services("start", env)
    assert started.returncode == 0, started.stdout + started.stderr
    pose_url = f"http://127.0.0.1:{env['POSE_PORT']}"
    gpu_url = f"http://127.0.0.1:{env['GPUOPT_PORT']}"
    assert pose_url in started.stdout
    assert gpu_url in started.stdout
    assert get(f"{pose_url}/healthz")["service"] == "pose_analyzer"
    assert get(f"{gpu_url}/healthz")["service"] == "gpu_optimizer"

    run_dir = tmp_path / "logs" / "run"
    pids = {p.stem: int(p.read_text().split()[0]) for p in run_dir.glob("*.pid")}
    assert set(pids) == {"pose_analyzer", "gpu_optimizer"}

    # JSON log lines with the config digest reach logs/<service>.log
    digest = get(f"{pose_url}/api/status/version")["config_digest"]
    lines = [json.loads(line) for line in (tmp_path / "logs" / "pose_analyzer.log").read_text().splitlines()]
    assert any(e["msg"] == "service started" and e["config_digest"] == digest for e in lines)

    again = services("start", env)
    assert again.returncode == 0
    assert "already running" in again.stdout

    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stopped = services("stop", env)
        assert stopped.returncode == 0
        for pid in pids.values():
            assert (
                not Path(f"/proc/{pid}").exists()
                or b"zombie" in Path(f"/proc/{pid}/status").read_bytes().lower()
            )
        assert bystander.poll() is None, "stop-all must stop only the PIDs it started"
        assert not list(run_dir.glob("*.pid"))
    finally:
        bystander.kill()
        bystander.wait()


def test_stop_all_ignores_a_pid_file_naming_another_program(env: dict[str, str], tmp_path: Path) -> None:
    run_dir = tmp_path / "logs" / "run"
    run_dir.mkdir(parents=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run_dir / "pose_analyzer.pid").write_text(f"{other.pid} 12345\n")  # same PID, another start time
        done = services("stop", env)
        assert done.returncode == 0
        assert other.poll() is None, "a reused PID must not be killed"
        assert "not running" in done.stdout
    finally:
        other.kill()
        other.wait()
