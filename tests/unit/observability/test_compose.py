"""docker/compose.yml read as YAML (no Docker engine here): services, ports, GPUs and mounts."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "docker" / "compose.yml"
# Bind-mount sources that the fleet's HAProxy part provides (compose.yml's header says what the
# file needs for the fleet profile).
WRITTEN_ELSEWHERE = {ROOT / "deploy" / "haproxy" / "haproxy.cfg"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def dockerfile_stages() -> dict[str, str]:
    """The text of each named stage (``FROM ... AS name``) of docker/Dockerfile."""
    stages: dict[str, list[str]] = {}
    current: list[str] = []
    for line in (ROOT / "docker" / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] == ["FROM"] and len(words) == 4 and words[2].upper() == "AS":
            current = stages.setdefault(words[3], [])
        current.append(line)
    return {name: "\n".join(lines) for name, lines in stages.items()}


def host_path(volume: str) -> Path:
    """The host side of a ``../path:/container[:ro]`` bind mount, resolved against docker/."""
    return (COMPOSE.parent / volume.split(":", 1)[0]).resolve()


def test_four_services_and_the_fleet_profile(compose: dict[str, Any]) -> None:
    default = {name for name, spec in compose["services"].items() if "profiles" not in spec}
    assert default == {"pose_analyzer", "gpu_optimizer", "prometheus", "grafana"}
    fleet = {name for name, spec in compose["services"].items() if spec.get("profiles") == ["fleet"]}
    assert fleet == {"pose_replica", "haproxy", "postgres"}


@pytest.mark.parametrize(
    ("service", "module", "port"),
    [("pose_analyzer", "pose_analyzer", 8001), ("gpu_optimizer", "gpu_optimizer", 8002)],
)
def test_services_run_from_the_project_image(
    compose: dict[str, Any], service: str, module: str, port: int
) -> None:
    spec = compose["services"][service]
    assert (COMPOSE.parent / spec["build"]["context"] / spec["build"]["dockerfile"]).resolve() == (
        ROOT / "docker" / "Dockerfile"
    )
    assert spec["build"]["target"] == service
    assert spec["image"] == f"ai-ml-pipeline/{service}:latest"
    assert spec["command"] == ["python", "-m", module]
    # The image's own stage runs the same service on the same port, with or without compose.
    stage = dockerfile_stages()[service]
    assert f'CMD ["python", "-m", "{module}"]' in stage
    assert f"EXPOSE {port}" in stage
    assert f"HEALTH_PORT={port}" in stage
    assert spec["ports"] == [f"{port}:{port}"]
    # The Dockerfile's HEALTHCHECK probes HEALTH_PORT.
    assert spec["environment"]["HEALTH_PORT"] == str(port)
    prefix = "POSE_" if module == "pose_analyzer" else "GPUOPT_"
    assert spec["environment"][f"{prefix}PORT"] == str(port)
    assert spec["environment"][f"{prefix}HOST"] == "0.0.0.0"


def test_gpu_optimizer_reserves_nvidia_gpus(compose: dict[str, Any]) -> None:
    (device,) = compose["services"]["gpu_optimizer"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia"
    assert device["capabilities"] == ["gpu"]
    assert "deploy" not in compose["services"]["pose_analyzer"]


def test_prometheus_scrapes_the_compose_services(compose: dict[str, Any]) -> None:
    spec = compose["services"]["prometheus"]
    (mount,) = [v for v in spec["volumes"] if v.startswith("../prometheus:")]
    assert host_path(mount) == ROOT / "prometheus"
    container_dir = mount.split(":")[1]
    (config_flag,) = [c for c in spec["command"] if c.startswith("--config.file=")]
    config = ROOT / "prometheus" / Path(config_flag.split("=", 1)[1]).relative_to(container_dir)
    scrape = yaml.safe_load(config.read_text())
    targets = {
        j["job_name"]: j["static_configs"][0]["targets"]
        for j in scrape["scrape_configs"]
        if "static_configs" in j
    }
    for service in ("pose_analyzer", "gpu_optimizer"):
        port = compose["services"][service]["ports"][0].split(":")[1]
        assert targets[service] == [f"{service}:{port}"]
    assert (
        scrape["rule_files"] == yaml.safe_load((ROOT / "prometheus/prometheus.yml").read_text())["rule_files"]
    )


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool missing (make test installs prometheus)"
)
def test_docker_prometheus_config_is_valid(tmp_path: Path) -> None:
    # promtool checks that the key files exist: compose mounts them under /run/secrets, so the
    # check runs on a copy whose key files lie in a temporary folder.
    copy = tmp_path / "prometheus"
    shutil.copytree(ROOT / "prometheus", copy)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    config = copy / "prometheus.docker.yml"
    for name in re.findall(r"/run/secrets/(\w+)", config.read_text()):
        (secrets / name).write_text("a-key")
    config.write_text(config.read_text().replace("/run/secrets/", f"{secrets}/"))
    done = subprocess.run(
        ["promtool", "check", "config", "prometheus.docker.yml"],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_grafana_gets_provisioning_and_dashboards(compose: dict[str, Any]) -> None:
    spec = compose["services"]["grafana"]
    mounts = {host_path(v): v.split(":")[1] for v in spec["volumes"] if v.startswith("../")}
    assert mounts[ROOT / "grafana" / "provisioning"] == "/etc/grafana/provisioning"
    assert (ROOT / "grafana" / "dashboards" / "pose_analyzer.json").exists()
    assert ROOT / "grafana" / "dashboards" in mounts
    # The datasource file reads PROMETHEUS_URL; it must name the compose service.
    assert spec["environment"]["PROMETHEUS_URL"] == "http://prometheus:9090"
    assert spec["depends_on"] == ["prometheus"]


def test_every_bind_mount_exists_and_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    for name, spec in compose["services"].items():
        for volume in spec.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert host_path(volume).exists() or host_path(volume) in WRITTEN_ELSEWHERE, (name, volume)
            else:
                assert source in compose["volumes"], (name, volume)


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    for name in ("prometheus", "grafana", "haproxy", "postgres"):
        image = compose["services"][name]["image"]
        assert ":" in image, image
        assert not image.endswith(":latest"), image
