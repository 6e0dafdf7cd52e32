"""docker/compose.yml's `fleet` profile read as YAML (no Docker engine here), checked against the
settings the replicas load and the Prometheus config that scrapes them; `docker compose config`
validates it too where the compose plugin is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from pose_analyzer.settings import PoseSettings

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "docker" / "compose.yml"
REQUIRED = re.compile(r"\$\{(\w+):\?[^}]+\}")  # compose refuses to start when it is unset or empty
DEFAULTED = re.compile(r"^\$\{(\w+):-(\d+)\}$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def example_variables() -> set[str]:
    lines = (ROOT / "docker" / ".env.example").read_text().splitlines()
    return {line.split("=", 1)[0] for line in lines if line and not line.startswith("#")}


def fill(value: str, values: dict[str, str]) -> str:
    """``value`` as compose interpolates it, for ``${VAR:?message}`` references."""
    return REQUIRED.sub(lambda m: values[m[1]], value)


def test_replicas_scale_by_deploy_replicas_and_publish_no_port(compose: dict[str, Any]) -> None:
    replica = compose["services"]["pose_replica"]
    count = replica["deploy"]["replicas"]
    match = DEFAULTED.match(str(count))
    assert isinstance(count, int) or match is not None, count
    assert int(match[2] if match else count) >= 2
    assert "ports" not in replica
    assert "container_name" not in replica  # replicas need distinct names
    assert replica["networks"] == ["fleet"]
    assert compose["networks"]["fleet"]["internal"] is True
    # Same image and command as the single pose_analyzer.
    single = compose["services"]["pose_analyzer"]
    for key in ("image", "build", "command"):
        assert replica[key] == single[key], key


def test_haproxy_is_the_only_public_entry_of_the_fleet(compose: dict[str, Any]) -> None:
    fleet = {name: spec for name, spec in compose["services"].items() if spec.get("profiles") == ["fleet"]}
    assert {name for name, spec in fleet.items() if "ports" in spec} == {"haproxy"}
    haproxy = fleet["haproxy"]
    assert haproxy["image"].startswith("haproxy:")  # the official image
    assert "../deploy/haproxy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in haproxy["volumes"]
    assert set(haproxy["networks"]) == {"default", "fleet"}
    assert haproxy["depends_on"]["pose_replica"]["condition"] == "service_healthy"
    (published,) = haproxy["ports"]
    assert published.endswith(":8000")
    # The documented minimal config matches: a :8000 frontend, the replicas by DNS, checks on /readyz
    # that keep a draining replica's streams (404 while draining, disable-on-404).
    header = COMPOSE.read_text().split("\nname:", 1)[0]
    for line in (
        "bind :8000",
        "bind :8404",
        "http-check disable-on-404",
        "http-check send meth GET uri /readyz?draining_status=404",
        "pose_replica:8001",
        "prometheus-exporter",
    ):
        assert line in header, line


def test_replicas_are_healthy_only_when_ready(compose: dict[str, Any]) -> None:
    replica = compose["services"]["pose_replica"]
    probe = " ".join(replica["healthcheck"]["test"])
    port = replica["environment"]["POSE_PORT"]
    assert f"http://127.0.0.1:{port}/readyz" in probe
    assert replica["expose"] == [port]


def test_replicas_share_postgres_with_a_required_password_and_key(compose: dict[str, Any]) -> None:
    replica = compose["services"]["pose_replica"]["environment"]
    postgres = compose["services"]["postgres"]
    assert postgres["image"].startswith("postgres:")  # the official image
    assert "ports" not in postgres
    assert postgres["networks"] == ["fleet"]
    assert "pg_isready" in postgres["healthcheck"]["test"]
    assert compose["services"]["pose_replica"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    (password_var,) = REQUIRED.findall(postgres["environment"]["POSTGRES_PASSWORD"])
    (key_var,) = REQUIRED.findall(replica["POSE_API_KEY"])
    assert {password_var, key_var} <= example_variables()
    values = {password_var: "pw", key_var: "k3y"}
    url = make_url(fill(replica["POSE_DATABASE_URL"], values))
    assert url.drivername == "postgresql+psycopg"
    assert (url.host, url.port, url.username, url.password, url.database) == (
        "postgres",
        5432,
        postgres["environment"]["POSTGRES_USER"],
        "pw",
        postgres["environment"]["POSTGRES_DB"],
    )
    env = {
        k.removeprefix("POSE_").lower(): fill(v, values) for k, v in replica.items() if k.startswith("POSE_")
    }
    settings = PoseSettings(log_dir=None, **env)
    assert settings.ops_endpoints_protected
    assert settings.port == 8001


def test_prometheus_finds_every_replica_and_haproxy(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]
    assert "fleet" in prometheus["networks"]
    assert "../deploy/prometheus/targets:/etc/prometheus-targets:ro" in prometheus["volumes"]
    scrape = yaml.safe_load((ROOT / "prometheus" / "prometheus.docker.yml").read_text())
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    (replicas,) = jobs["pose_analyzer"]["dns_sd_configs"]
    assert replicas == {"names": ["pose_replica"], "type": "A", "port": 8001}
    assert jobs["haproxy"]["dns_sd_configs"] == [{"names": ["haproxy"], "type": "A", "port": 8404}]
    for name in ("pose_analyzer", "gpu_optimizer", "haproxy"):
        (files,) = jobs[name]["file_sd_configs"]
        assert files["files"] == [f"/etc/prometheus-targets/{name}*.json"]
        assert jobs[name]["relabel_configs"][0]["target_label"] == "box"


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode != 0,
    reason="docker compose missing",
)
def test_docker_compose_config_accepts_the_fleet_profile(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("".join(f"{name}=x\n" for name in sorted(example_variables())))
    done = subprocess.run(
        [
            "docker",
            "compose",
            "-f",
            str(COMPOSE),
            "--env-file",
            str(env),
            "--profile",
            "fleet",
            "config",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
