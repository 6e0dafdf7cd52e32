"""Explicit configuration of third-party libraries that read the environment when imported.

ultralytics reads its environment at import: without ``YOLO_OFFLINE`` it resolves DNS names at
every import, without ``YOLO_AUTOINSTALL=0`` it pip-installs missing extras at run time, and it
writes a settings file under ``~`` unless ``YOLO_CONFIG_DIR`` points elsewhere; matplotlib
writes its cache under ``~`` unless ``MPLCONFIGDIR`` does.  ``configure_ultralytics`` sets them
once, from a cache directory the caller's settings name, before anything imports them (the
services' ``__main__``, the CLI, the test suite's conftest, the benchmarks).  A value already in
the environment wins: a deployment's own choice is left alone.
"""

from __future__ import annotations

import os
from pathlib import Path


def configure_ultralytics(cache_dir: Path) -> dict[str, str]:
    """Keep ultralytics offline and its (and matplotlib's) files under ``cache_dir``.

    Returns:
        The values now in effect, by variable name.
    """
    wanted = {
        "YOLO_OFFLINE": "1",
        "YOLO_AUTOINSTALL": "0",
        "YOLO_CONFIG_DIR": str(Path(cache_dir).resolve() / "ultralytics"),
        "MPLCONFIGDIR": str(Path(cache_dir).resolve() / "matplotlib"),
        "MPLBACKEND": "Agg",
    }
    return {name: os.environ.setdefault(name, value) for name, value in wanted.items()}
