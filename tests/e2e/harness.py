"""Helpers for end-to-end tests: real service processes (``python -m``) on free loopback ports."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningService:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wait_healthy(service: RunningService, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise RuntimeError(f"{service.name} exited: {service.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{service.url}/readyz", timeout=2) as resp:
                if json.load(resp).get("status") == "ready":
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{service.name} not ready after {timeout} s: {service.log.read_text()[-3000:]}")


StartService = Callable[..., RunningService]


def http_json(method: str, url: str, body: object | None = None, timeout: float = 30) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data, {"Content-Type": "application/json"}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def start_process(module: str, prefix: str, port: int, workdir: Path, **env: str) -> RunningService:
    """Start ``python -m module`` with ``<prefix><KEY>`` settings from ``env`` and wait until it is ready."""
    log = workdir / f"{module}-{port}.out"
    full_env = {
        **os.environ,
        f"{prefix}PORT": str(port),
        f"{prefix}LOG_DIR": str(workdir / "logs"),
        **{f"{prefix}{k.upper()}": v for k, v in env.items()},
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", module], cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT
        )
    service = RunningService(module, f"http://127.0.0.1:{port}", proc, log)
    try:
        wait_healthy(service)
    except Exception:
        service.stop()
        raise
    return service


def run_concurrently(run: Callable[[str], Any], names: Iterable[str], timeout: float = 300) -> dict[str, Any]:
    """``run(name)`` for every name at once, one thread each; their results by name.

    Raises the first exception a thread raised (after all threads ended), so a failing client
    fails the test with its own error.
    """
    results: dict[str, Any] = {}
    failures: list[BaseException] = []

    def one(name: str) -> None:
        try:
            results[name] = run(name)
        except BaseException as exc:  # re-raised in the caller's thread
            failures.append(exc)

    threads = [threading.Thread(target=one, args=(name,)) for name in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    if failures:
        raise failures[0]
    return results
