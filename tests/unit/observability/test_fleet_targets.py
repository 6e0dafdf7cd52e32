"""scripts/fleet_targets.py run as `make fleet-targets` runs it: a real process writing real files.

Input is validated as a whole before anything is written; each target file is replaced atomically
(a reader racing the writer never sees a partial file); the files are what Prometheus' own
promtool accepts for the file_sd_configs of prometheus/prometheus.yml.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "fleet_targets.py"
KINDS = ("pose_analyzer", "gpu_optimizer", "haproxy")


def fleet_targets(
    out: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    keys = out.parent / "keys"
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out), "--keys", str(keys), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")} | (env or {}),
    )


def read_groups(out: Path) -> dict[str, list[dict[str, Any]]]:
    return {kind: json.loads((out / f"{kind}.json").read_text()) for kind in KINDS}


def by_box(groups: list[dict[str, Any]]) -> dict[str, list[str]]:
    return {group["labels"]["box"]: group["targets"] for group in groups}


def test_hosts_get_both_services_on_their_default_ports(tmp_path: Path) -> None:
    out = tmp_path / "targets"
    done = fleet_targets(out, "--hosts", "gpu-a.lan 10.0.0.2 [fd00::7]")
    assert done.returncode == 0, done.stderr
    groups = read_groups(out)
    assert by_box(groups["pose_analyzer"]) == {
        "gpu-a.lan": ["gpu-a.lan:8001"],
        "10.0.0.2": ["10.0.0.2:8001"],
        "fd00::7": ["[fd00::7]:8001"],
    }
    assert by_box(groups["gpu_optimizer"])["10.0.0.2"] == ["10.0.0.2:8002"]
    assert groups["haproxy"] == []  # written empty, so a box removed from the fleet is dropped


def test_inventory_with_ports_replicas_haproxy_and_box_names(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory"
    inventory.write_text(
        "# the rack\n"
        "gpu-a.lan\n"
        "\n"
        "gpu-b.lan pose_analyzer=8001,8011,8021 gpu_optimizer   # three replicas\n"
        "10.0.0.7 gpu_optimizer=9002 haproxy box=rack1-07\n"
    )
    out = tmp_path / "targets"
    done = fleet_targets(out, "--inventory", str(inventory))
    assert done.returncode == 0, done.stderr
    groups = read_groups(out)
    assert by_box(groups["pose_analyzer"]) == {
        "gpu-a.lan": ["gpu-a.lan:8001"],
        "gpu-b.lan": ["gpu-b.lan:8001", "gpu-b.lan:8011", "gpu-b.lan:8021"],
    }
    assert by_box(groups["gpu_optimizer"]) == {
        "gpu-a.lan": ["gpu-a.lan:8002"],
        "gpu-b.lan": ["gpu-b.lan:8002"],
        "rack1-07": ["10.0.0.7:9002"],
    }
    assert by_box(groups["haproxy"]) == {"rack1-07": ["10.0.0.7:8404"]}
    # The example shipped beside the targets folder is a valid inventory too.
    example = ROOT / "deploy" / "prometheus" / "inventory.example"
    assert fleet_targets(tmp_path / "example", "--inventory", str(example)).returncode == 0


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("box1:8001", "write ports as SERVICE=PORT"),
        ("box1 box1:8001", "unknown word"),
        ("bad_host!", "not a host name"),
        ("[not-ipv6]", "not an IPv6 address"),
        ("box1 pose_analyzer=0", "from 1 to 65535"),
        ("box1 pose_analyzer=65536", "from 1 to 65535"),
        ("box1 pose_analyzer=80a", "from 1 to 65535"),
        ("box1 pose_analyzer=8001,8001", "lists a port twice"),
        ("box1 gpu_optimizer gpu_optimizer=9", "given twice"),
        ("box1 redis=6379", "unknown word"),
        ("box1 box=", "box=''"),
        ("box1 box=a/b", "box='a/b'"),
        ("box1\nbox1", "listed twice"),
        ("box1\nbox2 box=box1", "box 'box1' listed twice"),
        ("box1 pose_analyzer=8001 box=x\nbox1 gpu_optimizer=8001 box=y", "target box1:8001 listed twice"),
    ],
)
def test_bad_inventory_is_refused_and_the_old_targets_stay(tmp_path: Path, line: str, message: str) -> None:
    out = tmp_path / "targets"
    assert fleet_targets(out, "--hosts", "old-box").returncode == 0
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    inventory = tmp_path / "inventory"
    inventory.write_text(f"good-box\n{line}\n")
    done = fleet_targets(out, "--inventory", str(inventory))
    assert done.returncode == 2
    assert message in done.stderr
    assert "nothing written" in done.stderr
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before


def test_empty_hosts_and_unreadable_inventory_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "targets"
    done = fleet_targets(out, "--hosts", "  ")
    assert done.returncode == 2
    assert "no box listed" in done.stderr
    comments = tmp_path / "comments"
    comments.write_text("# boxes to come\n\n   # none yet\n")
    done = fleet_targets(out, "--inventory", str(comments))
    assert done.returncode == 2
    assert "no box listed" in done.stderr
    done = fleet_targets(out, "--inventory", str(tmp_path / "missing"))
    assert done.returncode == 2
    assert "cannot read inventory" in done.stderr
    assert not out.exists()


def test_rewrites_are_atomic_for_a_reader_racing_the_writer(tmp_path: Path) -> None:
    """A reader polls the file while the script rewrites it again and again with two fleets:
    every read is one whole version (an in-place write would show an empty or cut file)."""
    out = tmp_path / "targets"
    fleets = ["box-a box-b", " ".join(f"box-{n}.lan" for n in range(200))]
    versions = set()
    for hosts in fleets:
        assert fleet_targets(out, "--hosts", hosts).returncode == 0
        versions.add((out / "pose_analyzer.json").read_text())
    path = out / "pose_analyzer.json"
    seen: list[str] = []
    stop = threading.Event()

    def read_forever() -> None:
        while not stop.is_set():
            seen.append(path.read_text())

    reader = threading.Thread(target=read_forever)
    reader.start()
    try:
        inodes = set()
        for round_ in range(16):
            assert fleet_targets(out, "--hosts", fleets[round_ % 2]).returncode == 0
            inodes.add(path.stat().st_ino)
    finally:
        stop.set()
        reader.join(timeout=10)
    assert len(seen) > 100
    assert set(seen) <= versions, [s[:80] for s in set(seen) - versions]
    assert len(inodes) > 1  # replaced by rename, not rewritten in place
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{kind}.json" for kind in KINDS)  # no temp left


def test_key_files_from_the_environment_private_and_kept(tmp_path: Path) -> None:
    out = tmp_path / "targets"
    keys = tmp_path / "keys"
    done = fleet_targets(out, "--hosts", "box1", env={"GPUOPT_API_KEY": "s3cret"})
    assert done.returncode == 0, done.stderr
    assert (keys / "gpu_optimizer").read_text() == "s3cret\n"
    assert (keys / "pose_analyzer").read_text() == ""  # Prometheus sends an empty bearer
    for path in (keys, keys / "gpu_optimizer", keys / "pose_analyzer"):
        assert path.stat().st_mode & 0o077 == 0, path
    # Run again without the variable: the key stays.
    assert fleet_targets(out, "--hosts", "box1").returncode == 0
    assert (keys / "gpu_optimizer").read_text() == "s3cret\n"
    assert "s3cret" not in done.stdout + done.stderr


def test_if_missing_keeps_an_existing_fleet(tmp_path: Path) -> None:
    out = tmp_path / "targets"
    assert fleet_targets(out, "--hosts", "box1 box2").returncode == 0
    assert fleet_targets(out, "--hosts", "127.0.0.1", "--if-missing").returncode == 0
    assert set(by_box(read_groups(out)["pose_analyzer"])) == {"box1", "box2"}
    fresh = tmp_path / "fresh"
    assert fleet_targets(fresh, "--hosts", "127.0.0.1", "--if-missing").returncode == 0
    assert by_box(read_groups(fresh)["gpu_optimizer"]) == {"127.0.0.1": ["127.0.0.1:8002"]}


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool missing (make test installs prometheus)"
)
def test_promtool_accepts_the_written_files_for_prometheus_yml(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "prometheus", tmp_path / "prometheus")
    out = tmp_path / "deploy" / "prometheus" / "targets"
    inventory = ROOT / "deploy" / "prometheus" / "inventory.example"
    assert fleet_targets(out, "--inventory", str(inventory)).returncode == 0
    check = ["promtool", "check", "config", "prometheus.yml"]
    done = subprocess.run(check, cwd=tmp_path / "prometheus", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    # promtool reads the SD files: a cut one fails the same check.
    (out / "gpu_optimizer.json").write_text((out / "gpu_optimizer.json").read_text()[:-5])
    done = subprocess.run(check, cwd=tmp_path / "prometheus", capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
