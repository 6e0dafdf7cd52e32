"""Schemathesis drives both real services from their OpenAPI schemas: no request may get a 500."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from tests.e2e.harness import RunningService, free_port, start_process

MAX_EXAMPLES = 30


@pytest.fixture(scope="module")
def gpu_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    tmp = tmp_path_factory.mktemp("gpu")
    service = start_process(
        "gpu_optimizer",
        "GPUOPT_",
        free_port(),
        tmp,
        database_url=f"sqlite:///{tmp}/gpu.db",
        checkpoint_root=str(tmp / "ckpt"),
    )
    yield service
    service.stop()


@pytest.fixture(scope="module")
def pose_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    tmp: Path = tmp_path_factory.mktemp("pose")
    service = start_process(
        "pose_analyzer",
        "POSE_",
        free_port(),
        tmp,
        database_url=f"sqlite:///{tmp}/pose.db",
        backend="mediapipe",
    )
    yield service
    service.stop()


@pytest.fixture(scope="module")
def gpu_schema(gpu_service: RunningService) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{gpu_service.url}/openapi.json")


@pytest.fixture(scope="module")
def pose_schema(pose_service: RunningService) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{pose_service.url}/openapi.json")


fuzz_gpu = schemathesis.pytest.from_fixture("gpu_schema")
fuzz_pose = schemathesis.pytest.from_fixture("pose_schema")
fuzz_settings = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@fuzz_gpu.parametrize()
@fuzz_settings
def test_gpu_optimizer_never_answers_500(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=[not_a_server_error], timeout=60)


@fuzz_pose.parametrize()
@fuzz_settings
def test_pose_analyzer_never_answers_500(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=[not_a_server_error], timeout=60)
