"""Both services, a real Prometheus with our rules, and every query of our dashboards and rules.

Traffic: two camera streams (one counting biceps curls) and a truncated JPEG over the WebSocket,
a profiling job, a swap pool report and a verified checkpoint. Then every PromQL expression of
grafana/dashboards/*.json and prometheus/rules/*.yml must be valid and return data, except the
per-GPU series (gpu_*, DCGM_*) on a machine where NVML lists no GPU.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from service_kit.nvml import read_inventory
from tests.e2e.harness import ROOT, RunningService, StartService, free_port, http_json
from tests.e2e.test_pose_streams import encoded_frames, stream_and_wait

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus missing (make test installs it)")
RULES = sorted((ROOT / "prometheus" / "rules").glob("*.yml"))
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
# A metric name of the per-GPU families; gpuopt_* (the service's own) are not among them, nor is
# the job name gpu_optimizer.
GPU_SERIES = re.compile(r"\b((?!gpu_optimizer\b)gpu_[a-z_]+|DCGM_[A-Z_]+)")
# HAProxy's exporter series: no HAProxy here (tests/e2e/test_fleet_observability.py runs one).
HAPROXY_SERIES = re.compile(r"\bhaproxy_[a-z_]+")
# The final comparison of an alert expression (see prometheus/rules/alerts.yml).
THRESHOLD = re.compile(r"(==|!=|>=|<=|>|<)\s*([0-9.]+)\s*$")
LABEL_VALUES = re.compile(r"^label_values\((.+), (\w+)\)$")


@dataclass(frozen=True)
class Query:
    origin: str
    expr: str
    label: str | None = None  # for template variables: the label the query must carry


class Prometheus:
    """A Prometheus process on a loopback port, queried over its HTTP API."""

    def __init__(self, config: Path, data: Path, log: Path) -> None:
        assert PROMETHEUS is not None
        self.url = f"http://127.0.0.1:{free_port()}"
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={data}",
                    f"--web.listen-address={self.url.removeprefix('http://')}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.log = log

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"prometheus not ready after {timeout} s: {self.log.read_text()[-3000:]}")

    def api(self, path: str, **params: str) -> dict[str, Any]:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body: dict[str, Any] = json.load(resp)
        except urllib.error.HTTPError as err:
            body = json.load(err)
        return body

    def query(self, expr: str) -> dict[str, Any]:
        return self.api("query", query=expr)

    def has_data(self, expr: str) -> bool:
        answer = self.query(expr)
        return answer["status"] == "success" and bool(answer["data"]["result"])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)


def scrape_config(tmp_path: Path, targets: dict[str, str]) -> Path:
    """prometheus/prometheus.yml with our rule files, 1 s intervals and ``targets`` by job."""
    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(path) for path in RULES]
    jobs = [job for job in config["scrape_configs"] if job["job_name"] in targets]
    assert {job["job_name"] for job in jobs} == set(targets)
    for job in jobs:
        # One box, as scripts/fleet_targets.py would label it; the key files stay out (no key here).
        job.pop("file_sd_configs", None)
        job.pop("authorization", None)
        job["static_configs"] = [{"targets": [targets[job["job_name"]]], "labels": {"box": "local"}}]
    config["scrape_configs"] = jobs
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def dashboard_queries(concrete: dict[str, str]) -> list[Query]:
    """Every panel target and template variable of our dashboards, Grafana variables replaced."""

    def fill(expr: str) -> str:
        for name, value in concrete.items():
            expr = expr.replace(f"${name}", value)
        assert "$" not in expr, expr
        return expr

    queries = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                queries.append(Query(f"{path.name}: {panel['title']}", fill(target["expr"])))
        for variable in board["templating"]["list"]:
            found = LABEL_VALUES.match(variable["query"])
            assert found, variable["query"]
            queries.append(Query(f"{path.name}: ${variable['name']}", fill(found[1]), found[2]))
    return queries


def rule_queries() -> list[Query]:
    """Every rule's expression (an alert's threshold turned into ``bool``) and every recorded name."""
    queries = []
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    expr, replaced = THRESHOLD.subn(r"\1 bool \2", rule["expr"].strip())
                    assert replaced == 1, rule["expr"]
                    queries.append(Query(f"{path.name}: alert {rule['alert']}", expr))
                else:
                    queries.append(Query(f"{path.name}: {rule['record']}", rule["expr"]))
                    queries.append(Query(f"{path.name}: recorded {rule['record']}", rule["record"]))
    return queries


def drive_pose_traffic(service: RunningService, test_data: Path) -> None:
    """Two streams at once (a camera, and a curl clip that completes reps), then a refused frame."""
    base = service.url.replace("http://", "ws://")
    jobs = {
        "cam01": (
            encoded_frames(test_data / "multicam/videos/cam01.mp4", step=5, limit=12),
            None,
        ),
        "curl": (
            encoded_frames(test_data / "videos/curl_3reps_starts_midrep.mp4", step=3),
            {"type": "start", "exercise": "biceps_curl"},
        ),
    }
    failures: list[BaseException] = []

    def run(name: str) -> None:
        try:
            stream_and_wait(f"{base}/ws/streams/{name}", *jobs[name])
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(name,)) for name in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    # A truncated JPEG: refused with 1003, counted under websocket errors.
    with connect(f"{base}/ws/streams/cut", open_timeout=30, close_timeout=10) as ws:
        ws.send(jobs["curl"][0][0][1][:1000])
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=30)


def drive_gpu_traffic(service: RunningService, checkpoint_root: Path) -> None:
    """A swap pool report, a checkpoint verified, and a profiling job run to its end."""
    report = {
        "pid": 4242,
        "hostname": socket.gethostname(),
        "device": "cpu",
        "tiers": {
            tier: {"bytes": 1 << 20, "tensors": 2, "swaps_in": 3, "swaps_out": 4}
            for tier in ("device", "host", "disk")
        },
        "bytes_moved": 8 << 20,
        "move_seconds": 0.5,
        "throughput_bytes_per_s": 16 << 20,
    }
    status, _ = http_json("PUT", f"{service.url}/api/swap-pools/trainer.0", report)
    assert status == 200
    run = {"status": "running", "step": 40, "loss": 0.5, "samples_per_s": 900.0, "oom_events": 1}
    status, _ = http_json("PUT", f"{service.url}/api/runs/obs-train", {**run, "rollbacks": 1, "restarts": 2})
    assert status == 200
    (name,) = [p.name for p in (checkpoint_root / "obs").iterdir() if not p.name.startswith(".")]
    status, verified = http_json("POST", f"{service.url}/api/checkpoints/obs/{name}/verify")
    assert status == 200
    assert isinstance(verified, dict)
    assert verified["ok"] is True
    status, job = http_json("POST", f"{service.url}/api/profile", {"model": "gpt-tiny", "batch_size": 2})
    assert status == 202
    assert isinstance(job, dict)
    deadline = time.monotonic() + 60
    while job["state"] not in ("succeeded", "failed") and time.monotonic() < deadline:
        time.sleep(0.3)
        _, job = http_json("GET", f"{service.url}/api/jobs/{job['id']}")
        assert isinstance(job, dict)
    assert job["state"] == "succeeded", job


def save_checkpoint(root: Path) -> None:
    import torch

    from gpu_optimizer.checkpoints.manager import CheckpointManager

    CheckpointManager(root, "obs").save(1, torch.nn.Linear(8, 4))


@pytest.fixture
def prometheus_factory() -> Iterator[list[Prometheus]]:
    """Prometheus processes the test starts; each is stopped (bounded waits) at teardown."""
    started: list[Prometheus] = []
    yield started
    for process in started:
        process.stop()


def test_every_dashboard_and_rule_query_returns_data(
    start_service: StartService,
    prometheus_factory: list[Prometheus],
    test_data: Path,
    tmp_path: Path,
) -> None:
    checkpoint_root = tmp_path / "checkpoints"
    save_checkpoint(checkpoint_root)
    pose = start_service(
        "pose_analyzer", "POSE_", backend="mediapipe", database_url=f"sqlite:///{tmp_path}/pose.db"
    )
    gpu = start_service(
        "gpu_optimizer",
        "GPUOPT_",
        database_url=f"sqlite:///{tmp_path}/gpu.db",
        checkpoint_root=str(checkpoint_root),
    )
    instances = {
        "pose_analyzer": pose.url.removeprefix("http://"),
        "gpu_optimizer": gpu.url.removeprefix("http://"),
    }
    prom = Prometheus(scrape_config(tmp_path, instances), tmp_path / "tsdb", tmp_path / "prometheus.out")
    prometheus_factory.append(prom)
    prom.wait_ready()

    drive_gpu_traffic(gpu, checkpoint_root)
    drive_pose_traffic(pose, test_data)

    # Until the last events are scraped and the 1 s rule groups have run on them.
    sentinels = [
        'pose_stream_reps_total{exercise="biceps_curl"} > 0',
        "pose_stream_websocket_errors_total > 0",
        'gpuopt_jobs_total{state="succeeded"}',
        "gpuopt_checkpoint_last_save_seconds",
        "gpuopt_swap_pool_bytes",
        "gpuopt_training_step",
        "instance:pose_stream_end_to_end_latency_seconds:p99_rate1m",
    ]
    deadline = time.monotonic() + 30
    while not all(prom.has_data(s) for s in sentinels) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert all(prom.has_data(s) for s in sentinels), [s for s in sentinels if not prom.has_data(s)]
    time.sleep(3)

    concrete = {
        # Grafana writes a multi-value selection as a|b (dots left as regex wildcards, as Grafana does).
        "box": "local",
        "instance": "|".join(instances.values()),
        "stream": "cam01|curl",
        "gpu": ".*",
        "__rate_interval": "1m",
    }
    queries = dashboard_queries(concrete) + rule_queries()
    has_gpu = bool(read_inventory().gpus)
    expected_empty = [
        q for q in queries if (not has_gpu and GPU_SERIES.search(q.expr)) or HAPROXY_SERIES.search(q.expr)
    ]
    assert len(queries) > len(expected_empty) > 0

    invalid, empty, unexpected = [], [], []
    for query in queries:
        answer = prom.query(query.expr)
        if answer["status"] != "success":
            invalid.append((query, answer.get("error")))
            continue
        result = answer["data"]["result"]
        if query in expected_empty:
            if result:
                unexpected.append(query)
        elif not result or (query.label is not None and any(query.label not in r["metric"] for r in result)):
            empty.append(query)
    assert not invalid, invalid
    assert not empty, empty
    assert not unexpected, unexpected

    # Every rule group evaluates cleanly, and with both services up no ServiceDown fires.
    groups = prom.api("rules")["data"]["groups"]
    assert {Path(g["file"]).name for g in groups} == {p.name for p in RULES}
    assert all(r["health"] == "ok" for g in groups for r in g["rules"]), groups
    assert not prom.has_data('ALERTS{alertname="ServiceDown"}')
