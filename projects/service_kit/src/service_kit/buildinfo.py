"""Version, git commit and build time of an installed service package."""

from __future__ import annotations

import os
import subprocess
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import lru_cache
from importlib import metadata
from pathlib import Path


@dataclass(frozen=True, slots=True)
class BuildInfo:
    version: str
    git_commit: str
    build_time: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


@lru_cache(maxsize=8)
def build_info(distribution: str, source_file: str) -> BuildInfo:
    """Build info of ``distribution`` whose code lives at ``source_file``.

    ``AIML_GIT_COMMIT`` and ``AIML_BUILD_TIME`` (set by the Docker build) win; otherwise the
    commit comes from the git checkout the code runs from, and the build time is when the
    package was installed (its dist-info was written).
    """
    dist = metadata.distribution(distribution)
    commit = os.environ.get("AIML_GIT_COMMIT") or _git(["rev-parse", "HEAD"], Path(source_file).parent)
    built = os.environ.get("AIML_BUILD_TIME")
    if not built:
        meta_path = (
            Path(str(dist.locate_file("")))
            / f"{dist.metadata['Name'].replace('-', '_')}-{dist.version}.dist-info"
        )
        stamp = meta_path.stat().st_mtime if meta_path.exists() else Path(source_file).stat().st_mtime
        built = datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds")
    return BuildInfo(version=dist.version, git_commit=commit or "unknown", build_time=built)
