"""docker/compose.yml ships locked: keys and Grafana's password from docker/.env, nothing anonymous."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from gpu_optimizer.settings import GpuOptSettings
from pose_analyzer.settings import PoseSettings
from service_kit.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[3]
DOCKER = ROOT / "docker"
REQUIRED = re.compile(
    r"^\$\{(\w+):\?[^}]+\}$"
)  # compose refuses to start when the variable is unset or empty


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yml").read_text())
    return data


def example_variables() -> dict[str, str]:
    lines = (DOCKER / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def interpolate(environment: dict[str, str], values: dict[str, str]) -> dict[str, str]:
    """What compose passes to the container, for ``${VAR:?message}`` and plain values."""
    out = {}
    for name, value in environment.items():
        match = REQUIRED.match(str(value))
        out[name] = values[match[1]] if match else str(value)
    return out


@pytest.mark.parametrize(
    ("service", "settings", "prefix"),
    [("pose_analyzer", PoseSettings, "POSE_"), ("gpu_optimizer", GpuOptSettings, "GPUOPT_")],
)
def test_services_require_a_key_from_the_env_file(
    compose: dict[str, Any], service: str, settings: type[ServiceSettings], prefix: str
) -> None:
    environment = compose["services"][service]["environment"]
    match = REQUIRED.match(environment[f"{prefix}API_KEY"])
    assert match is not None, "the key must be required, not defaulted"
    assert match[1] in example_variables()
    assert f"{prefix}ALLOW_ANONYMOUS" not in environment
    # The container's settings: with the key, the ops endpoints are protected (bound to 0.0.0.0) ...
    env = interpolate(environment, {match[1]: "k3y"})
    fields = {k.removeprefix(prefix).lower(): v for k, v in env.items() if k.startswith(prefix)}
    loaded = settings(log_dir=None, **fields)
    assert loaded.ops_endpoints_protected
    # ... and had compose passed it without a key, the service would refuse to start.
    fields.pop("api_key")
    with pytest.raises(ValidationError, match="without an API key"):
        settings(log_dir=None, **fields)


def test_prometheus_scrapes_with_the_keys_as_secrets(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]
    scrape = yaml.safe_load((ROOT / "prometheus" / "prometheus.docker.yml").read_text())
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    for service, secret, variable in (
        ("pose_analyzer", "pose_api_key", "POSE_API_KEY"),
        ("gpu_optimizer", "gpuopt_api_key", "GPUOPT_API_KEY"),
    ):
        assert jobs[service]["authorization"]["credentials_file"] == f"/run/secrets/{secret}"
        assert secret in prometheus["secrets"]
        assert compose["secrets"][secret] == {"environment": variable}


def test_grafana_has_no_default_password_and_no_anonymous_access(compose: dict[str, Any]) -> None:
    environment = compose["services"]["grafana"]["environment"]
    match = REQUIRED.match(environment["GF_SECURITY_ADMIN_PASSWORD"])
    assert match is not None
    assert match[1] in example_variables()
    assert environment["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert "GF_AUTH_ANONYMOUS_ORG_ROLE" not in environment


def test_the_env_file_is_neither_committed_nor_copied_into_images() -> None:
    assert "docker/.env" in (ROOT / ".gitignore").read_text().splitlines()
    assert "**/.env" in (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
    assert all(value == "" for value in example_variables().values()), "the example holds no secrets"
