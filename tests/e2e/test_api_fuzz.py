"""Schemathesis drives both real services from their OpenAPI schemas: no request may get a 5xx.

It runs as schemathesis' own command line against live servers (its pytest plugin does not
support pytest 9), with the ``not_a_server_error`` check; the JUnit report names each failing
operation when it fails.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import StartService

MAX_EXAMPLES = "25"


def fuzz(url: str, report: Path) -> subprocess.CompletedProcess[str]:
    schemathesis = Path(sys.executable).with_name("schemathesis")
    return subprocess.run(
        [
            str(schemathesis),
            "run",
            f"{url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            MAX_EXAMPLES,
            "--request-timeout",
            "120",
            "--report",
            "junit",
            "--report-junit-path",
            str(report),
            "--suppress-health-check",
            "all",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        cwd=report.parent,  # schemathesis keeps its example database in ./.schemathesis
        timeout=900,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )


@pytest.mark.parametrize(("module", "prefix"), [("gpu_optimizer", "GPUOPT_"), ("pose_analyzer", "POSE_")])
def test_no_request_gets_a_server_error(
    start_service: StartService, tmp_path: Path, module: str, prefix: str
) -> None:
    service = start_service(
        module,
        prefix,
        database_url=f"sqlite:///{tmp_path}/db.sqlite",
        **({"checkpoint_root": str(tmp_path / "ckpt")} if module == "gpu_optimizer" else {}),
    )
    done = fuzz(service.url, tmp_path / "junit.xml")
    report = (tmp_path / "junit.xml").read_text() if (tmp_path / "junit.xml").exists() else ""
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:] + report[-3000:]
    selected = re.search(r"Selected: (\d+)/(\d+)", done.stdout)
    tested = re.search(r"Tested: (\d+)", done.stdout)
    generated = re.search(r"(\d+) generated, (\d+) passed", done.stdout)
    assert selected, done.stdout[-3000:]
    assert tested, done.stdout[-3000:]
    assert generated, done.stdout[-3000:]
    assert int(tested.group(1)) == int(selected.group(2)) >= 4, "every operation must be exercised"
    assert int(generated.group(1)) == int(generated.group(2)) >= 20
