"""Start both services in the background, or stop exactly the ones started here.

``start``: launches ``python -m pose_analyzer`` and ``python -m gpu_optimizer`` in their own
process sessions, with PID files under ``logs/run/`` and output in ``logs/<service>.out``,
then waits until both answer ``/healthz`` and prints their URLs.  ``stop``: signals only the
PIDs in those files, after checking that each is still the process started here: a PID file
holds the PID and the kernel's start time of that process, so a PID the system reused for
something else is left alone.

Usage: python scripts/services.py start|stop|status [--timeout SECONDS]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOGS = Path(os.environ.get("AIML_LOG_DIR", ROOT / "logs"))
RUN_DIR = LOGS / "run"
SERVICES = {"pose_analyzer": ("POSE_", 8001), "gpu_optimizer": ("GPUOPT_", 8002)}


def port_of(service: str) -> int:
    prefix, default = SERVICES[service]
    return int(os.environ.get(f"{prefix}PORT", default))


def url_of(service: str) -> str:
    prefix, _ = SERVICES[service]
    host = os.environ.get(f"{prefix}HOST", "127.0.0.1")
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port_of(service)}"


def healthy(service: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url_of(service)}/healthz", timeout=2) as resp:
            return bool(json.load(resp).get("service") == service)
    except Exception:
        return False


def pid_file(service: str) -> Path:
    return RUN_DIR / f"{service}.pid"


def start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, or None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name may contain spaces and parentheses
    state, ticks = fields[0], fields[19]
    return None if state in ("Z", "X") else ticks


def our_pid(service: str) -> int | None:
    """The PID in the service's PID file if that very process (same start time) still runs, else None."""
    try:
        pid_text, ticks = pid_file(service).read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    return pid if start_ticks(pid) == ticks else None


def start(timeout: float) -> int:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "POSE_LOG_DIR": str(LOGS), "GPUOPT_LOG_DIR": str(LOGS)}
    for service in SERVICES:
        if our_pid(service) is not None:
            print(f"{service}: already running (pid {our_pid(service)})")
            continue
        if healthy(service):
            print(f"{service}: a {service} not started here already answers at {url_of(service)}; leaving it")
            continue
        out = open(LOGS / f"{service}.out", "ab")  # noqa: SIM115 - handed to the child, closed below
        proc = subprocess.Popen(
            [sys.executable, "-m", service],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        pid_file(service).write_text(f"{proc.pid} {start_ticks(proc.pid)}\n")
        print(f"{service}: started (pid {proc.pid}), log {LOGS / (service + '.out')}")
    deadline = time.monotonic() + timeout
    waiting = set(SERVICES)
    while waiting and time.monotonic() < deadline:
        for service in list(waiting):
            if healthy(service):
                waiting.discard(service)
            elif pid_file(service).exists() and our_pid(service) is None:
                print(f"{service}: exited during start-up; see {LOGS / (service + '.out')}", file=sys.stderr)
                return 1
        time.sleep(0.5)
    if waiting:
        print(f"not healthy after {timeout:.0f} s: {', '.join(sorted(waiting))}", file=sys.stderr)
        return 1
    for service in SERVICES:
        url = url_of(service)
        print(f"{service}: {url}  (docs {url}/docs, metrics {url}/metrics)")
    return 0


def stop(timeout: float) -> int:
    for service in SERVICES:
        pid = our_pid(service)
        if pid is None:
            print(f"{service}: not running (no live PID file)")
            pid_file(service).unlink(missing_ok=True)
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while our_pid(service) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        if our_pid(service) is not None:
            os.kill(pid, signal.SIGKILL)
            print(f"{service}: killed (pid {pid}) after {timeout:.0f} s")
        else:
            print(f"{service}: stopped (pid {pid})")
        pid_file(service).unlink(missing_ok=True)
    return 0


def status() -> int:
    for service in SERVICES:
        pid = our_pid(service)
        state = "healthy" if healthy(service) else "not answering"
        print(f"{service}: pid {pid or '-'}, {state} at {url_of(service)}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    if args.command == "start":
        return start(args.timeout)
    if args.command == "stop":
        return stop(min(args.timeout, 20.0))
    return status()


if __name__ == "__main__":
    sys.exit(main())
