"""A fleet on one machine: PostgreSQL, N pose_analyzer replicas on loopback, HAProxy in front.

``start``: a PostgreSQL cluster in the clone's ignored state folder (``.cache/fleet/pg``, made with
initdb on first use), N replicas (``python -m pose_analyzer`` on 127.0.0.1, ports from
``--replica-port``, all on that database with ``POSE_SHARED_DATABASE=true``), then HAProxy
(``deploy/haproxy/haproxy.cfg.template``) on ``--port``; waits until every replica is ready.
``stop``: stops exactly the processes whose PIDs (with their start times) ``start`` recorded.
The tests and the benchmark drive the same ``Fleet`` class.

Usage: python scripts/fleet.py start|stop|status [--replicas N] [--port P] [--tls-cert PEM]
Replicas get the caller's POSE_* environment (backend, API key...).
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from string import Template

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "haproxy" / "haproxy.cfg.template"
DEFAULT_STATE = ROOT / ".cache" / "fleet"


def start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, or None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def pg_bin() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    if not versions:
        raise SystemExit("PostgreSQL server binaries absent: bash scripts/system_deps.sh postgresql")
    return versions[-1].parent


def ready(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=timeout) as resp:
            return bool(json.load(resp).get("status") == "ready")
    except Exception:
        return False


class Fleet:
    """The fleet's processes and their PID file (``state/pids.json``: name -> [pid, start ticks])."""

    def __init__(
        self,
        state: Path = DEFAULT_STATE,
        port: int = 8000,
        stats_port: int = 8404,
        replica_port: int = 8101,
        pg_port: int = 5433,
        tls_cert: Path | None = None,
    ) -> None:
        self.state = state
        self.port, self.stats_port, self.replica_port, self.pg_port = port, stats_port, replica_port, pg_port
        self.tls_cert = tls_cert
        self.replicas: dict[str, int] = {}  # name -> port
        self.state.mkdir(parents=True, exist_ok=True)
        (self.state / "logs").mkdir(exist_ok=True)
        self._as_postgres = os.geteuid() == 0  # initdb refuses root: run the server as "postgres"
        self._children: list[subprocess.Popen[bytes]] = []  # started by this object: reaped by stop()

    # -- PID bookkeeping ------------------------------------------------------------------------
    @property
    def pid_file(self) -> Path:
        return self.state / "pids.json"

    def pids(self) -> dict[str, list[str]]:
        try:
            return dict(json.loads(self.pid_file.read_text()))
        except (OSError, ValueError):
            return {}

    def _record(self, name: str, pid: int | None) -> None:
        pids = self.pids()
        if pid is None:
            pids.pop(name, None)
        else:
            pids[name] = [str(pid), start_ticks(pid) or ""]
        self.pid_file.write_text(json.dumps(pids, indent=1))

    def live_pid(self, name: str) -> int | None:
        """The recorded PID of ``name`` if that very process (same start time) still runs."""
        entry = self.pids().get(name)
        if entry is None:
            return None
        pid = int(entry[0])
        return pid if start_ticks(pid) == entry[1] else None

    # -- PostgreSQL -----------------------------------------------------------------------------
    @property
    def database_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.pg_port}/postgres"

    def _pg(self, *args: str) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        return subprocess.run([*prefix, *args], check=True, capture_output=True, text=True, timeout=120)

    def start_postgres(self) -> None:
        pg = self.state / "pg"
        data = pg / "data"
        if not data.exists():
            pg.mkdir(exist_ok=True)
            if self._as_postgres:
                user = pwd.getpwnam("postgres")
                os.chown(pg, user.pw_uid, user.pw_gid)
            init = [str(pg_bin() / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8"]
            self._pg(*init, "--no-sync")
        options = f"-p {self.pg_port} -k {pg} -c listen_addresses=127.0.0.1 -c max_connections=200"
        self._pg(
            str(pg_bin() / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(pg / "server.log"),
            "-w",
            "start",
        )
        pid = int((data / "postmaster.pid").read_text().split()[0])
        self._record("postgres", pid)

    def stop_postgres(self) -> None:
        data = self.state / "pg" / "data"
        if self.live_pid("postgres") is not None:
            self._pg(str(pg_bin() / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        self._record("postgres", None)

    # -- replicas -------------------------------------------------------------------------------
    def start_replica(self, index: int, env: dict[str, str] | None = None) -> str:
        """Start replica ``r<index>`` on ``replica_port + index - 1`` (not waiting); returns its name."""
        name, port = f"r{index}", self.replica_port + index - 1
        replica_env = {
            **os.environ,
            **(env or {}),
            "POSE_HOST": "127.0.0.1",
            "POSE_PORT": str(port),
            "POSE_DATABASE_URL": self.database_url,
            "POSE_SHARED_DATABASE": "true",
            "POSE_LOG_DIR": str(self.state / "logs" / name),
        }
        with (self.state / "logs" / f"{name}.out").open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pose_analyzer"],
                cwd=ROOT,
                env=replica_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._children.append(proc)
        self.replicas[name] = port
        self._record(name, proc.pid)
        return name

    def replica_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.replicas[name]}"

    def wait_ready(self, names: list[str], timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        waiting = set(names)
        while waiting:
            for name in list(waiting):
                if self.live_pid(name) is None:
                    log = (self.state / "logs" / f"{name}.out").read_text()[-2000:]
                    raise RuntimeError(f"replica {name} exited during start-up: {log}")
                if ready(self.replica_url(name)):
                    waiting.discard(name)
            if waiting and time.monotonic() > deadline:
                raise TimeoutError(f"replicas not ready after {timeout:.0f} s: {sorted(waiting)}")
            time.sleep(0.3)

    def signal_replica(self, name: str, sig: signal.Signals) -> int:
        pid = self.live_pid(name)
        if pid is None:
            raise RuntimeError(f"replica {name} is not running")
        os.kill(pid, sig)
        return pid

    # -- HAProxy --------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        scheme = "wss" if self.tls_cert else "ws"
        return f"{scheme}://127.0.0.1:{self.port}"

    def haproxy_config(self) -> str:
        servers = "\n".join(
            f"    server {name} 127.0.0.1:{port}" for name, port in sorted(self.replicas.items())
        )
        return Template(TEMPLATE.read_text()).substitute(
            bind=f"127.0.0.1:{self.port}",
            tls=f" ssl crt {self.tls_cert}" if self.tls_cert else "",
            stats_bind=f"127.0.0.1:{self.stats_port}",
            servers=servers,
        )

    def start_haproxy(self) -> None:
        """Start HAProxy with the current replicas; a running one hands over (``-sf``: it finishes
        the streams it carries, new connections go to the new process)."""
        config = self.state / "haproxy.cfg"
        config.write_text(self.haproxy_config())
        subprocess.run(["haproxy", "-c", "-q", "-f", str(config)], check=True, timeout=30)
        command = ["haproxy", "-db", "-f", str(config)]
        old = self.live_pid("haproxy")
        if old is not None:
            command += ["-sf", str(old)]
        with (self.state / "logs" / "haproxy.out").open("ab") as out:
            proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self._children.append(proc)
        self._record("haproxy", proc.pid)
        deadline = time.monotonic() + 15
        while not self._listening(proc.pid):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"HAProxy did not start: see {self.state / 'logs' / 'haproxy.out'}")
            time.sleep(0.05)

    def _listening(self, pid: int) -> bool:
        """Whether HAProxy process ``pid`` holds its port (another may still, while it hands over)."""
        inodes = {f"socket:[{line.split()[9]}]" for line in self._tcp_listeners()}
        try:
            fds = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            return False
        return any(fd in inodes for fd in fds)

    def _tcp_listeners(self) -> list[str]:
        """Lines of /proc/net/tcp for sockets listening on this fleet's port (state 0A)."""
        port = f":{self.port:04X}"
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
        return [line for line in lines if line.split()[1].endswith(port) and line.split()[3] == "0A"]

    # -- all ------------------------------------------------------------------------------------
    def replica_for(self, session_id: str, port: int | None = None) -> str:
        """The replica HAProxy routes ``session_id`` to (its X-Pose-Replica answer header)."""
        url = f"http://127.0.0.1:{port or self.port}/readyz?session_id={session_id}"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return str(resp.headers["X-Pose-Replica"])

    def wait_routed(self, names: set[str], timeout: float = 60.0) -> None:
        """Until HAProxy routes to every replica in ``names`` (its health checks marked them up)."""
        deadline = time.monotonic() + timeout
        ids = [str(uuid.UUID(int=i)) for i in range(64)]
        while time.monotonic() < deadline:
            try:
                if {self.replica_for(i) for i in ids} >= names:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"HAProxy does not route to all of {sorted(names)}")

    def start(self, replicas: int, env: dict[str, str] | None = None, timeout: float = 180.0) -> None:
        self.start_postgres()
        names = [self.start_replica(i, env) for i in range(1, replicas + 1)]
        self.start_haproxy()
        self.wait_ready(names, timeout)

    def stop(self, timeout: float = 45.0) -> None:
        """SIGTERM (then SIGKILL after ``timeout``) the recorded HAProxy and replicas, stop PostgreSQL.

        ``timeout`` leaves a replica its drain (POSE_DRAIN_GRACE_S, 10 s by default, plus the close).
        """
        for name in sorted(self.pids()):
            if name == "postgres":
                continue
            pid = self.live_pid(name)
            if pid is not None:
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + timeout
                while self.live_pid(name) is not None and time.monotonic() < deadline:
                    time.sleep(0.1)
                if self.live_pid(name) is not None:
                    os.kill(pid, signal.SIGKILL)
            self._record(name, None)
        self.stop_postgres()
        for child in self._children:  # already signalled above (or gone): collect their exit
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self._children.clear()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--port", type=int, default=int(os.environ.get("FLEET_PORT", 8000)))
    parser.add_argument("--stats-port", type=int, default=int(os.environ.get("FLEET_STATS_PORT", 8404)))
    parser.add_argument("--replica-port", type=int, default=int(os.environ.get("FLEET_REPLICA_PORT", 8101)))
    parser.add_argument("--pg-port", type=int, default=int(os.environ.get("FLEET_PG_PORT", 5433)))
    parser.add_argument("--tls-cert", type=Path, default=os.environ.get("FLEET_TLS_CERT") or None)
    parser.add_argument("--state", type=Path, default=Path(os.environ.get("FLEET_STATE_DIR", DEFAULT_STATE)))
    args = parser.parse_args()
    fleet = Fleet(args.state, args.port, args.stats_port, args.replica_port, args.pg_port, args.tls_cert)
    if args.command == "stop":
        fleet.stop()
        print("fleet stopped")
        return 0
    if args.command == "status":
        for name in sorted(fleet.pids()):
            print(f"{name}: pid {fleet.live_pid(name) or '- (gone)'}")
        return 0
    if fleet.live_pid("haproxy") is not None:
        print("a fleet started here is running; make stop-fleet first", file=sys.stderr)
        return 1
    try:
        fleet.start(args.replicas)
    except Exception as exc:
        print(f"the fleet did not start: {exc}", file=sys.stderr)
        fleet.stop()
        return 1
    print(
        f"fleet: {args.replicas} replicas behind {fleet.url} (HAProxy metrics http://127.0.0.1:{args.stats_port}/metrics)"
    )
    print(f"database: {fleet.database_url}; logs under {args.state / 'logs'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
