"""pixi.toml and the pip lock beside it describe the same environment."""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("aiml_lock", ROOT / "scripts" / "lock.py")
assert spec
assert spec.loader
lock = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lock)


def test_every_pixi_pin_is_in_the_lock_at_the_same_version() -> None:
    _, pins = lock.read_lock(lock.LOCK)
    for name, requirement in lock.pixi_requirements().items():
        wanted = Requirement(requirement)
        assert name in pins, f"{name} is in pixi.toml but not in requirements/lock.txt"
        assert wanted.specifier.contains(pins[name]), (
            f"{name}: pixi.toml {wanted.specifier}, lock {pins[name]}"
        )


def test_lock_was_generated_from_the_current_pixi_toml() -> None:
    digest, _ = lock.read_lock(lock.LOCK)
    assert digest == lock.inputs_digest(lock.pixi_requirements()), "run `make lock`"


def test_cuda_feature_pins_the_same_torch_as_the_lock() -> None:
    manifest = tomllib.loads((ROOT / "pixi.toml").read_text())
    _, pins = lock.read_lock(lock.LOCK)
    for feature in ("cpu", "cuda"):
        for name in ("torch", "torchvision"):
            spec_ = manifest["feature"][feature]["pypi-dependencies"][name]
            assert Requirement(f"{name}{spec_['version']}").specifier.contains(pins[name])


def test_local_packages_requirements_are_satisfied_by_the_lock() -> None:
    _, pins = lock.read_lock(lock.LOCK)
    for project in ("service_kit", "pose_analyzer", "gpu_optimizer"):
        data = tomllib.loads((ROOT / "projects" / project / "pyproject.toml").read_text())
        for dep in data["project"]["dependencies"]:
            req = Requirement(dep)
            name = lock.normalize(req.name)
            if name in {"service-kit"}:
                continue
            assert name in pins, f"{project} needs {req.name}, which the lock lacks"
            assert req.specifier.contains(pins[name]), f"{project} needs {req}, lock has {pins[name]}"


def test_lock_parser_reads_pins_and_digest(tmp_path: Path) -> None:
    path = tmp_path / "lock.txt"
    path.write_text("# header\n# inputs-sha256: abc\nFoo_Bar==1.2\nbaz==3\n")
    assert lock.read_lock(path) == ("abc", {"foo-bar": "1.2", "baz": "3"})


@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="not running in a virtual environment")
def test_running_environment_matches_the_lock() -> None:
    _, pins = lock.read_lock(lock.LOCK)
    wrong = {}
    for name, version in pins.items():
        try:
            installed = metadata.version(name).split("+")[0]
        except metadata.PackageNotFoundError:
            wrong[name] = ("missing", version)
            continue
        if installed != version:
            wrong[name] = (installed, version)
    assert not wrong, f"installed != locked: {wrong}"
