"""A user's clone has no sibling ``shared`` folder: it carries every file its tests and benchmarks read.

The attack: clone the committed repository into a folder with no sibling ``shared/`` and run,
there, the tests that read real images and videos; a path that still points outside the clone
fails them.  The clone's own venv layer is built as ``make`` would (``bootstrap_venv.py``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SIBLING = "/".join(("..", "shared"))  # spelled so that this file does not match itself
# Tests that read tests/data (images with expected landmarks, a clip, the COCO annotations).
DATA_TESTS = (
    "tests/unit/pose_analyzer/test_detection_mediapipe.py",
    "tests/unit/pose_analyzer/test_video_io.py",
)


def _git(*args: str, cwd: Path = ROOT) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(
    shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout"
)
def test_a_clone_without_a_sibling_shared_folder_passes_the_data_tests(tmp_path: Path) -> None:
    clone = tmp_path / "alone" / "ai-ml-pipeline"
    _git("clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone))
    assert not (clone.parent / "shared").exists()
    grep = subprocess.run(
        ["git", "grep", "-l", "-F", SIBLING, "--", "projects", "tests", "benchmarks", "scripts"],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert grep.returncode == 1, f"files that read {SIBLING}: {grep.stdout}"

    bootstrap = subprocess.run(
        [sys.executable, "scripts/bootstrap_venv.py", "ensure"],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bootstrap.returncode == 0, bootstrap.stdout + bootstrap.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "VIRTUAL_ENV"))}
    done = subprocess.run(
        [
            str(clone / ".venv" / "bin" / "python"),
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            *DATA_TESTS,
        ],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    last = done.stdout.splitlines()[-1]
    assert " passed" in last
    assert "skipped" not in last
