"""Fixtures of the end-to-end tier: real servers, browsers and Prometheus."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import RunningService, StartService, free_port, start_process


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[StartService]:
    """Start ``python -m <module>`` with extra env; every service started is stopped at teardown."""
    started: list[RunningService] = []

    def start(module: str, prefix: str, port: int | None = None, **env: str) -> RunningService:
        service = start_process(module, prefix, port or free_port(), tmp_path, **env)
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()
