"""Build or reuse the pip environment used when pixi is not installed.

Two layers, so that many clones share the heavy part without touching each other:

* the **shared venv** holds the third-party packages of requirements/lock.txt and nothing
  else.  It lives outside the clone, under ``$AIML_CACHE`` (default ``~/.cache/ai-ml-pipeline``),
  keyed by the SHA-256 of the lock, so a second clone or a second ``make test`` reuses it in
  seconds while a changed lock or a fresh machine installs everything;
* the **clone venv** (``.venv`` inside the clone, ignored by git) holds this clone's own three
  packages in editable mode and reaches the shared packages through one ``.pth`` file.

A clone's ``make`` therefore never changes the code another clone runs, and deleting a clone
deletes only its own layer.

Usage: python scripts/bootstrap_venv.py path | shared-path | ensure
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "lock.txt"
PROJECTS = ("service_kit", "pose_analyzer", "gpu_optimizer")
DISTRIBUTIONS = ("service-kit", "pose-analyzer", "gpu-optimizer")
CLONE_VENV = ROOT / ".venv"
STAMP = "aiml-stamp.txt"
# Named to sort after setuptools' ``__editable__*.pth`` files, so the clone's packages come first.
SHARED_PTH = "zz_aiml_shared.pth"


def cache_dir() -> Path:
    return Path(os.environ.get("AIML_CACHE", Path.home() / ".cache" / "ai-ml-pipeline"))


def shared_venv_path() -> Path:
    digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()[:16]
    return cache_dir() / "venvs" / f"py{sys.version_info.major}{sys.version_info.minor}-{digest}"


def _site_packages(env: Path) -> Path:
    """The purelib folder of the venv at ``env`` (same interpreter version as this one)."""
    relative = Path(sysconfig.get_path("purelib", vars={"base": "", "platbase": ""}).lstrip("/"))
    return env / relative


def _pip(python: Path, *args: str) -> None:
    subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", *args], check=True)


def ensure_shared() -> Path:
    """The third-party layer, installed once per lock hash and never edited by a clone."""
    env = shared_venv_path()
    env.parent.mkdir(parents=True, exist_ok=True)
    with open(env.parent / f"{env.name}.lock", "w") as guard:
        # Two clones running `make` at once on a fresh machine build the venv once, not twice.
        fcntl.flock(guard, fcntl.LOCK_EX)
        _build_shared(env)
    return env


def _build_shared(env: Path) -> None:
    complete = env / ".lock-installed"
    if not complete.exists():
        if env.exists():
            shutil.rmtree(env)
        print(
            f"creating {env} from {LOCK.name} (first run on this machine: a few minutes)",
            flush=True,
        )
        venv.create(env, with_pip=True)
        _pip(env / "bin" / "python", "install", "--quiet", "--no-deps", "-r", str(LOCK))
        _pip(env / "bin" / "python", "check")
        complete.write_text(LOCK.read_text())
    _drop_local_packages(env)


def _drop_local_packages(env: Path) -> None:
    """Remove editable installs that older versions of this script put into the shared venv."""
    site = _site_packages(env)
    stale = [d for d in DISTRIBUTIONS if list(site.glob(f"{d.replace('-', '_')}-*.dist-info"))]
    if stale:
        _pip(env / "bin" / "python", "uninstall", "--quiet", "--yes", *stale)


def _clone_stamp(shared: Path) -> str:
    parts = [str(ROOT), str(shared), Path(__file__).read_text()]
    parts += [(ROOT / "projects" / p / "pyproject.toml").read_text() for p in PROJECTS]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def ensure() -> Path:
    """The clone venv over the shared one; returns the clone venv."""
    shared = ensure_shared()
    stamp = CLONE_VENV / STAMP
    if stamp.exists() and stamp.read_text() == _clone_stamp(shared):
        return CLONE_VENV
    if CLONE_VENV.exists():
        shutil.rmtree(CLONE_VENV)
    venv.create(CLONE_VENV, with_pip=False, symlinks=True)
    shared_site = _site_packages(shared)
    (_site_packages(CLONE_VENV) / SHARED_PTH).write_text(
        f"import site; site.addsitedir({str(shared_site)!r})\n"
    )
    editable = [arg for p in PROJECTS for arg in ("-e", str(ROOT / "projects" / p))]
    python = CLONE_VENV / "bin" / "python"
    _pip(python, "install", "--quiet", "--no-deps", "--no-build-isolation", *editable)
    _expose_shared_commands(shared)
    stamp.write_text(_clone_stamp(shared))
    return CLONE_VENV


def _expose_shared_commands(shared: Path) -> None:
    """Put the shared venv's commands (pytest, torchrun, schemathesis, ruff...) in the clone's bin.

    A Python entry point of the shared venv would run the shared interpreter, which does not see
    this clone's packages; its wrapper here runs the same script with the clone's interpreter.
    Native programs are linked as they are.
    """
    bin_dir = CLONE_VENV / "bin"
    for command in sorted((shared / "bin").iterdir()):
        target = bin_dir / command.name
        if target.exists() or command.name.startswith(("python", "activate", "Activate")):
            continue
        with command.open("rb") as head:
            first_line = head.readline()
        if first_line.startswith(b"#!") and b"python" in first_line:
            target.write_text(f'#!/bin/sh\nexec "{bin_dir / "python"}" "{command}" "$@"\n')
            target.chmod(0o755)
        else:
            target.symlink_to(command)


def main() -> int:
    command = sys.argv[1] if len(sys.argv) > 1 else "ensure"
    if command == "path":
        print(CLONE_VENV)
    elif command == "shared-path":
        print(shared_venv_path())
    elif command == "ensure":
        print(ensure())
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
