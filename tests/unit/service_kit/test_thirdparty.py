"""Third-party environment is configured explicitly, from settings, never as a side effect of an import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

_PROBE = """
import json, os, sys
import pose_analyzer.app, pose_analyzer.cli
before = {k: os.environ.get(k) for k in ("YOLO_OFFLINE", "YOLO_CONFIG_DIR", "MPLCONFIGDIR")}
from pathlib import Path
from service_kit.thirdparty import configure_ultralytics
after = configure_ultralytics(Path(sys.argv[1]))
print(json.dumps({"before": before, "after": after}))
"""


def test_imports_set_nothing_and_configure_ultralytics_sets_all_under_the_cache_dir(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YOLO_", "MPL"))}
    env["YOLO_AUTOINSTALL"] = "keep-me"  # a deployment's own value wins
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(tmp_path)], env=env, capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["before"] == {"YOLO_OFFLINE": None, "YOLO_CONFIG_DIR": None, "MPLCONFIGDIR": None}
    after = result["after"]
    assert after["YOLO_OFFLINE"] == "1"
    assert after["YOLO_AUTOINSTALL"] == "keep-me"
    assert after["YOLO_CONFIG_DIR"] == str(tmp_path.resolve() / "ultralytics")
    assert after["MPLCONFIGDIR"] == str(tmp_path.resolve() / "matplotlib")
