"""Two boxes in one Prometheus: file_sd targets written by scripts/fleet_targets.py, real services.

Box a and box b each run a real gpu_optimizer and a real pose_analyzer (on this machine, on their
own ports, with API keys that protect /metrics); box a also runs a real HAProxy with its built-in
Prometheus exporter in front of both pose replicas. The script `make fleet-targets` calls writes
the target files from an inventory, and a real Prometheus runs prometheus/prometheus.yml (a copy,
at 1 s intervals) with its file_sd_configs and key files. Then:
- every query of the dashboards' fleet row returns a series for each box that can have it:
  both boxes, HAProxy's panels box a only, the GPU-only panels valid and (without a GPU) empty;
- the box variable lists both boxes;
- stopping box b's services makes FleetServiceDown pending for box b only, and dropping box b
  from the target files makes FleetTargetVanished pending for it (Prometheus re-reads the files);
- many rewrites of the target files while Prometheus watches them give no read error.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from service_kit.nvml import read_inventory
from tests.e2e.harness import ROOT, RunningService, free_port, start_process
from tests.e2e.test_observability import PROMETHEUS, Prometheus
from tests.e2e.test_pose_streams import encoded_frames, stream_and_wait

HAPROXY = shutil.which("haproxy", path=f"{os.environ.get('PATH', '')}:/usr/sbin")  # Debian: /usr/sbin
pytestmark = [
    pytest.mark.skipif(PROMETHEUS is None, reason="prometheus missing (make test installs it)"),
    pytest.mark.skipif(HAPROXY is None, reason="haproxy missing (make test installs it)"),
]
SCRIPT = ROOT / "scripts" / "fleet_targets.py"
BOXES = ("box-a", "box-b")
KEYS = {"POSE_API_KEY": "pose-fleet-key", "GPUOPT_API_KEY": "gpu-fleet-key"}
FLEET_JOBS = 'job=~"pose_analyzer|gpu_optimizer|haproxy"'


def fleet_row_module() -> Any:
    """grafana/fleet_row.py, loaded the way the generator loads it (its folder on sys.path)."""
    spec = importlib.util.spec_from_file_location("grafana_generate", ROOT / "grafana" / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    return sys.modules["fleet_row"]


def fleet_panel_queries() -> list[tuple[str, str]]:
    """(dashboard: title, expr) of every target of the fleet row of both dashboards, as Grafana
    sends it with both boxes selected."""
    queries = []
    for path in sorted((ROOT / "grafana" / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            if not panel["title"].startswith("Fleet: "):
                continue
            for target in panel["targets"]:
                expr = target["expr"].replace("$box", "|".join(BOXES)).replace("$__rate_interval", "1m")
                assert "$" not in expr, expr
                queries.append((f"{path.name}: {panel['title']}", expr))
    return queries


def write_targets(inventory: str, tmp_path: Path) -> None:
    """What `make fleet-targets INVENTORY=...` runs, into the copy's deploy/prometheus/."""
    path = tmp_path / "inventory"
    path.write_text(inventory)
    deploy = tmp_path / "deploy" / "prometheus"
    command = [sys.executable, str(SCRIPT), "--inventory", str(path)]
    command += ["--out", str(deploy / "targets"), "--keys", str(deploy / "keys")]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **KEYS},
    )
    assert done.returncode == 0, done.stderr


def prometheus_config(tmp_path: Path) -> Path:
    """prometheus/ copied beside the written deploy/prometheus/, at 1 s intervals, as it is else."""
    copy = tmp_path / "prometheus"
    shutil.copytree(ROOT / "prometheus", copy)
    config = yaml.safe_load((copy / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    (copy / "prometheus.yml").write_text(yaml.safe_dump(config))
    return copy / "prometheus.yml"


def haproxy_config(path: Path, metrics_port: int, replicas: list[RunningService]) -> None:
    """A minimal HAProxy: the pose replicas checked on /readyz, and the Prometheus exporter."""
    servers = "\n".join(
        f"  server r{n} {r.url.removeprefix('http://')} check inter 500ms rise 1"
        for n, r in enumerate(replicas)
    )
    path.write_text(
        "global\n  maxconn 256\n"
        "defaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n"
        f"frontend stats\n  bind 127.0.0.1:{metrics_port}\n"
        "  http-request use-service prometheus-exporter if { path /metrics }\n"
        f"frontend streams\n  bind 127.0.0.1:{free_port()}\n  default_backend pose\n"
        f"backend pose\n  option httpchk GET /readyz\n{servers}\n"
    )


@pytest.fixture
def processes() -> Iterator[list[RunningService | subprocess.Popen[bytes]]]:
    started: list[RunningService | subprocess.Popen[bytes]] = []
    yield started
    for process in reversed(started):
        if isinstance(process, RunningService):
            process.stop()
        elif process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def boxes_of(prom: Prometheus, expr: str) -> set[str]:
    answer = prom.query(expr)
    assert answer["status"] == "success", (expr, answer.get("error"))
    return {r["metric"].get("box", "") for r in answer["data"]["result"]}


def test_two_boxes_fill_every_fleet_panel_and_the_fleet_alerts_fire(
    processes: list[RunningService | subprocess.Popen[bytes]], test_data: Path, tmp_path: Path
) -> None:
    services: dict[str, dict[str, RunningService]] = {}
    for box in BOXES:
        workdir = tmp_path / box
        workdir.mkdir()
        gpu = start_process(
            "gpu_optimizer",
            "GPUOPT_",
            free_port(),
            workdir,
            api_key=KEYS["GPUOPT_API_KEY"],
            protect_ops_endpoints="true",
            database_url=f"sqlite:///{workdir}/gpu.db",
            checkpoint_root=str(workdir / "checkpoints"),
        )
        processes.append(gpu)
        pose = start_process(
            "pose_analyzer",
            "POSE_",
            free_port(),
            workdir,
            api_key=KEYS["POSE_API_KEY"],
            protect_ops_endpoints="true",
            backend="mediapipe",
            database_url=f"sqlite:///{workdir}/pose.db",
        )
        processes.append(pose)
        services[box] = {"gpu_optimizer": gpu, "pose_analyzer": pose}
    # /metrics asks for the key: Prometheus must send the one fleet_targets.py wrote.
    with pytest.raises(urllib.error.HTTPError, match="401"):
        urllib.request.urlopen(f"{services['box-a']['gpu_optimizer'].url}/metrics", timeout=10)

    metrics_port = free_port()
    haproxy_config(tmp_path / "haproxy.cfg", metrics_port, [services[b]["pose_analyzer"] for b in BOXES])
    assert HAPROXY is not None
    with (tmp_path / "haproxy.out").open("wb") as out:
        processes.append(
            subprocess.Popen([HAPROXY, "-db", "-f", str(tmp_path / "haproxy.cfg")], stdout=out, stderr=out)
        )

    def line(box: str, extra: str = "") -> str:
        ports = " ".join(f"{name}={s.url.rsplit(':', 1)[1]}" for name, s in services[box].items())
        return f"127.0.0.1 {ports}{extra} box={box}\n"

    inventory = line("box-a", f" haproxy={metrics_port}") + line("box-b")
    write_targets(inventory, tmp_path)
    prom = Prometheus(prometheus_config(tmp_path), tmp_path / "tsdb", tmp_path / "prometheus.out")
    processes.append(prom.process)
    prom.wait_ready()

    frames = encoded_frames(test_data / "multicam/videos/cam01.mp4", step=5, limit=6)
    for box in BOXES:
        url = services[box]["pose_analyzer"].url.replace("http://", "ws://")
        stream_and_wait(f"{url}/ws/streams/cam-{box}?api_key={KEYS['POSE_API_KEY']}", frames, None)

    sentinels = (
        [f'up{{{FLEET_JOBS}, box="{box}"}} == 1' for box in BOXES]
        + [f'instance:pose_stream_end_to_end_latency_seconds:p95_rate1m{{box="{box}"}}' for box in BOXES]
        + ['haproxy_server_status{box="box-a", state="UP"} == 1']
    )
    wait_for(lambda: all(prom.has_data(s) for s in sentinels), "the first scrapes of every target")
    assert boxes_of(prom, f"count by (box, job) (up{{{FLEET_JOBS}}} == 1)") == set(BOXES)
    time.sleep(2)

    fleet_row = fleet_row_module()
    has_gpu = bool(read_inventory().gpus)
    queries = fleet_panel_queries()
    assert len({title for title, _ in queries}) >= 2 * 12
    wrong = []
    for title, expr in queries:
        panel = title.split(": ", 1)[1]
        got = boxes_of(prom, expr)  # asserts the query is valid
        if panel in fleet_row.GPU_ONLY_TITLES and not has_gpu:
            expected: set[str] = set()
        elif panel in fleet_row.HAPROXY_TITLES:
            expected = {"box-a"}
        else:
            expected = set(BOXES)
        if got != expected:
            wrong.append((title, expr, got, expected))
    assert not wrong, wrong
    # The box variable's query (label_values(up{...}, box)) finds both boxes.
    variable = json.loads((ROOT / "grafana/dashboards/gpu_optimizer.json").read_text())["templating"]["list"][
        0
    ]
    match = re.fullmatch(r"label_values\((.+), box\)", variable["query"])
    assert match is not None
    assert boxes_of(prom, match[1]) == set(BOXES)

    # Box b stops answering: its services are stopped, box a's keep running.
    for service in services["box-b"].values():
        service.stop()

    def alert_jobs(alert: str, box: str) -> set[str]:
        answer = prom.query(f'ALERTS{{alertname="{alert}", box="{box}"}}')
        return {r["metric"]["job"] for r in answer["data"]["result"]}

    wait_for(
        lambda: alert_jobs("FleetServiceDown", "box-b") == {"gpu_optimizer", "pose_analyzer"}, "box b down"
    )
    assert alert_jobs("FleetServiceDown", "box-a") == set()

    # Box b leaves the target files, rewritten many times while Prometheus watches them.
    only_a = inventory.splitlines()[0] + "\n"
    for round_ in range(12):
        write_targets(only_a if round_ % 2 else inventory, tmp_path)
    write_targets(only_a, tmp_path)
    wait_for(lambda: boxes_of(prom, f"up{{{FLEET_JOBS}}}") == {"box-a"}, "box b dropped from the targets")
    wait_for(
        lambda: alert_jobs("FleetTargetVanished", "box-b") == {"gpu_optimizer", "pose_analyzer"},
        "box b vanished",
    )
    assert alert_jobs("FleetTargetVanished", "box-a") == set()
    with urllib.request.urlopen(f"{prom.url}/metrics", timeout=10) as resp:
        own = resp.read().decode()
    read_errors = re.search(r"^prometheus_sd_file_read_errors_total (\S+)$", own, re.MULTILINE)
    assert read_errors is not None
    assert float(read_errors[1]) == 0
    assert "Error reading file" not in prom.log.read_text()
