"""Build or reuse the pip virtual environment used when pixi is not installed.

The venv lives outside the clone, under ``$AIML_CACHE`` (default
``~/.cache/ai-ml-pipeline``), keyed by the SHA-256 of requirements/lock.txt, so a
second clone or a second ``make test`` reuses it in seconds while a changed lock or a
fresh machine installs everything.  The three local packages are installed in
editable mode; when the venv is reused from another clone they are re-pointed here.

Usage: python scripts/bootstrap_venv.py path | ensure
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "lock.txt"
PROJECTS = ("service_kit", "pose_analyzer", "gpu_optimizer")
STAMP = "aiml-stamp.txt"


def cache_dir() -> Path:
    return Path(os.environ.get("AIML_CACHE", Path.home() / ".cache" / "ai-ml-pipeline"))


def venv_path() -> Path:
    digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()[:16]
    return cache_dir() / "venvs" / f"py{sys.version_info.major}{sys.version_info.minor}-{digest}"


def _pip(env: Path, *args: str) -> None:
    subprocess.run(
        [str(env / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", *args], check=True
    )


def _project_stamp() -> str:
    parts = [str(ROOT)] + [(ROOT / "projects" / p / "pyproject.toml").read_text() for p in PROJECTS]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def ensure() -> Path:
    env = venv_path()
    complete = env / ".lock-installed"
    if not complete.exists():
        if env.exists():
            shutil.rmtree(env)
        print(
            f"creating {env} from {LOCK.name} (first run on this machine: a few minutes)",
            flush=True,
        )
        venv.create(env, with_pip=True)
        _pip(env, "install", "--quiet", "--no-deps", "-r", str(LOCK))
        _pip(env, "check")
        complete.write_text(LOCK.read_text())
    stamp = env / STAMP
    if not stamp.exists() or stamp.read_text() != _project_stamp():
        editable = [arg for p in PROJECTS for arg in ("-e", str(ROOT / "projects" / p))]
        _pip(env, "install", "--quiet", "--no-deps", "--no-build-isolation", *editable)
        stamp.write_text(_project_stamp())
    return env


def main() -> int:
    command = sys.argv[1] if len(sys.argv) > 1 else "ensure"
    if command == "path":
        print(venv_path())
    elif command == "ensure":
        print(ensure())
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
