"""Two clones share the cached third-party venv but each runs its own code.

The attack: clone B runs ``make``-style bootstrapping after clone A, then B is deleted.  Before
the per-clone layer, B's bootstrap re-pointed the shared venv's editable installs to B, so A
ran B's code, and A could not import its own packages at all once B was gone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COPIED = ("scripts", "requirements", "projects")


def _clone(dest: Path) -> Path:
    """A minimal clone: what bootstrap_venv.py reads, without caches or virtual environments."""
    ignore = shutil.ignore_patterns(".venv", "__pycache__", "*.egg-info", "build")
    for name in COPIED:
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    return dest


def _bootstrap(clone: Path) -> None:
    done = subprocess.run(
        [sys.executable, "scripts/bootstrap_venv.py", "ensure"],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PIP_NO_INPUT": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _where(clone: Path, module: str) -> str:
    done = subprocess.run(
        [str(clone / ".venv" / "bin" / "python"), "-c", f"import {module}; print({module}.__file__)"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _shared_venv() -> Path:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bootstrap_venv.py"), "shared-path"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(done.stdout.strip())


@pytest.mark.skipif(
    not (_shared_venv() / ".lock-installed").exists(), reason="needs the shared venv of this lock"
)
def test_each_clone_runs_its_own_code_and_survives_the_other_being_deleted(tmp_path: Path) -> None:
    first, second = _clone(tmp_path / "first"), _clone(tmp_path / "second")
    _bootstrap(first)
    _bootstrap(second)

    for package in ("pose_analyzer", "gpu_optimizer", "service_kit"):
        assert _where(first, package).startswith(str(first / "projects")), package
        assert _where(second, package).startswith(str(second / "projects")), package
    # Third-party packages come from the one shared venv, not from a copy per clone.
    assert _where(first, "fastapi").startswith(str(_shared_venv()))
    assert (first / ".venv" / "bin" / "pose-analyzer").read_text().startswith(f"#!{first}/.venv/bin/python")

    # The shared venv's commands run with the clone's interpreter: torchrun workers see its code.
    worker = tmp_path / "worker.py"
    worker.write_text("import gpu_optimizer\nprint('worker', gpu_optimizer.__file__)\n")
    launched = subprocess.run(
        [str(first / ".venv" / "bin" / "torchrun"), "--nproc-per-node", "1", str(worker)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert launched.returncode == 0, launched.stderr
    assert f"worker {first / 'projects'}" in launched.stdout

    shutil.rmtree(second)
    assert _where(first, "pose_analyzer").startswith(str(first / "projects"))
    assert _where(first, "torch").startswith(str(_shared_venv()))
    # The shared layer holds no clone's packages.
    site = next((_shared_venv() / "lib").glob("python3*/site-packages"))
    assert not list(site.glob("pose_analyzer*")), "a clone installed itself into the shared venv"
