"""Test tiers are chosen by folder: unit/ and api/ are fast, e2e/ starts real servers, gpu/ needs CUDA."""

from __future__ import annotations

from pathlib import Path

import pytest

from service_kit.thirdparty import configure_ultralytics

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_DATA = REPO_ROOT / "tests" / "data"
CACHE = REPO_ROOT / ".cache"

# Keep ultralytics offline and its settings inside the project (docs/environment.md), as the
# services and the CLI do, before any test module imports it.
configure_ultralytics(CACHE)


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    has_cuda = cuda_available()
    for item in items:
        path = Path(str(item.fspath))
        if "gpu" in path.parts or item.get_closest_marker("gpu"):
            item.add_marker(pytest.mark.gpu)
            if not has_cuda:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))
        if "e2e" in path.parts:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def test_data() -> Path:
    """tests/data: the real images and videos with ground truth (sources in its README)."""
    if not TEST_DATA.is_dir():
        pytest.fail(f"test data missing: {TEST_DATA}")
    return TEST_DATA
