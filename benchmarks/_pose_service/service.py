"""The real service in its own process: ``python -m pose_analyzer`` on a free loopback port, and a
sampler of its resident memory."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from _pose_service.frames import REPO_ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_service(
    workdir: Path, backend: str, timeout_s: float = 180.0
) -> Iterator[tuple[str, psutil.Process]]:
    """Start ``python -m pose_analyzer`` on a free loopback port; yields (base URL, process).

    MediaPipe or YOLO as ``backend``, SQLite and logs in ``workdir``.  The service is stopped
    (terminate, then kill) when the block ends, by error or Ctrl-C too.

    Raises:
        RuntimeError: the service exited before it was ready.
        TimeoutError: it was not ready within ``timeout_s``.
    """
    port = _free_port()
    env = {
        **os.environ,
        "POSE_HOST": "127.0.0.1",
        "POSE_PORT": str(port),
        "POSE_BACKEND": backend,
        "POSE_DATABASE_URL": f"sqlite:///{workdir / 'pose.db'}",
        "POSE_LOG_DIR": str(workdir / "logs"),
    }
    log = workdir / "service.out"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pose_analyzer"], cwd=REPO_ROOT, env=env, stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the service exited ({proc.returncode}): {log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the service was not ready after {timeout_s:g} s")
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=2) as resp:
                    if json.load(resp).get("status") == "ready":
                        break
            except OSError:
                pass
            time.sleep(0.3)
        yield url, psutil.Process(proc.pid)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class RssSampler(threading.Thread):
    """Samples the resident memory of a process and its children; ``peak_bytes`` is the maximum."""

    def __init__(self, process: psutil.Process, interval_s: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.process, self.interval_s = process, interval_s
        self.peak_bytes = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                tree = [self.process, *self.process.children(recursive=True)]
                self.peak_bytes = max(self.peak_bytes, sum(p.memory_info().rss for p in tree))
            except psutil.Error:  # a child that just ended; the next sample sees the rest
                pass
            self._stop_event.wait(self.interval_s)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)
