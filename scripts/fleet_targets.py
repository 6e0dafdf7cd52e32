"""Write Prometheus' file_sd target files for a fleet of GPU boxes, labelled by box.

``make fleet-targets HOSTS="box1 box2"`` (or ``INVENTORY=path``) writes one file per service kind
into ``deploy/prometheus/targets/`` (``pose_analyzer.json``, ``gpu_optimizer.json``,
``haproxy.json``), which ``prometheus/prometheus.yml`` reads with ``file_sd_configs``. Prometheus
re-reads them on change; no restart. Every line of the input is validated before anything is
written, and each file is replaced atomically (written beside it, fsynced, renamed over it), so
Prometheus never reads half a file and a bad inventory leaves the old targets in place.

Inventory format, one box per line (``#`` starts a comment)::

    HOST [SERVICE[=PORT[,PORT...]] ...] [box=NAME]

    gpu-a.lan                                        # pose_analyzer:8001 and gpu_optimizer:8002
    gpu-b.lan pose_analyzer=8001,8011 gpu_optimizer  # two replicas; gpu_optimizer on 8002
    10.0.0.7 gpu_optimizer=9002 haproxy box=rack1-07 # haproxy's Prometheus endpoint on 8404

A line with only a host gets the default services; a line naming services gets exactly those.
The ``box`` label defaults to the host. HOST is a DNS name, an IPv4 address or ``[IPv6]``.

Off loopback the services ask for their API key on /metrics: the key files Prometheus sends
(``deploy/prometheus/keys/{pose_analyzer,gpu_optimizer}``, mode 0600, ignored by git) are written
from ``POSE_API_KEY`` / ``GPUOPT_API_KEY`` when set, and created empty when missing.
Stdlib only, so ``make observe`` can run it with the system Python.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS_DIR = ROOT / "deploy" / "prometheus" / "targets"
KEYS_DIR = ROOT / "deploy" / "prometheus" / "keys"
# The API key Prometheus sends to each service kind (prometheus.yml's credentials_file), and the
# variable it is taken from; a service without a key ignores it.
KEY_VARIABLES = {"pose_analyzer": "POSE_API_KEY", "gpu_optimizer": "GPUOPT_API_KEY"}
# Default port of each service kind; the ones a bare host gets are marked True.
PORTS = {"pose_analyzer": 8001, "gpu_optimizer": 8002, "haproxy": 8404}
BARE_HOST_SERVICES = ("pose_analyzer", "gpu_optimizer")
LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){LABEL}(\.{LABEL})*$")
BOX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$")


class InventoryError(ValueError):
    """A line of the inventory (or of HOSTS) that cannot be turned into targets."""


@dataclass
class Box:
    """One box: its label, its host and the ports of each service kind it runs."""

    name: str
    host: str
    ports: dict[str, list[int]] = field(default_factory=dict)

    def targets(self, service: str) -> list[str]:
        return [f"{self.host}:{port}" for port in self.ports.get(service, [])]


def check_host(host: str, where: str) -> str:
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise InventoryError(f"{where}: {host!r} is not an IPv6 address in brackets") from None
        return host
    if ":" in host:
        raise InventoryError(f"{where}: {host!r}: write ports as SERVICE=PORT, IPv6 addresses as [addr]")
    if not HOSTNAME.match(host):
        raise InventoryError(f"{where}: {host!r} is not a host name or IPv4 address")
    return host


def parse_ports(service: str, text: str, where: str) -> list[int]:
    if text == "":
        return [PORTS[service]]
    ports = []
    for item in text.split(","):
        if not item.isdigit() or not 1 <= int(item) <= 65535:
            raise InventoryError(f"{where}: {service}={text}: ports are numbers from 1 to 65535")
        ports.append(int(item))
    if len(set(ports)) != len(ports):
        raise InventoryError(f"{where}: {service}={text} lists a port twice")
    return ports


def parse_line(line: str, where: str) -> Box | None:
    """One inventory line as a Box, or None for a blank or comment line."""
    words = line.split("#", 1)[0].split()
    if not words:
        return None
    host = check_host(words[0], where)
    box = Box(name=host.strip("[]"), host=host)
    for word in words[1:]:
        key, _, value = word.partition("=")
        if key == "box":
            if not BOX.match(value):
                raise InventoryError(f"{where}: box={value!r}: letters, digits, '_', '.', ':', '-' (1-63)")
            box.name = value
        elif key in PORTS:
            if key in box.ports:
                raise InventoryError(f"{where}: {key} given twice")
            box.ports[key] = parse_ports(key, value, where)
        else:
            raise InventoryError(f"{where}: unknown word {word!r} (services: {', '.join(PORTS)}; box=NAME)")
    if not box.ports:
        box.ports = {service: [PORTS[service]] for service in BARE_HOST_SERVICES}
    return box


def parse_inventory(lines: Iterable[str], source: str) -> list[Box]:
    """Every box of the inventory, checked as a whole: no empty fleet, no target or box twice."""
    boxes = [box for number, line in enumerate(lines, 1) if (box := parse_line(line, f"{source}:{number}"))]
    if not boxes:
        raise InventoryError(f"{source}: no box listed")
    names = [box.name for box in boxes]
    if len(set(names)) != len(names):
        raise InventoryError(f"{source}: box {next(n for n in names if names.count(n) > 1)!r} listed twice")
    seen: set[str] = set()
    for box in boxes:
        for service in box.ports:
            for target in box.targets(service):
                if target in seen:
                    raise InventoryError(f"{source}: target {target} listed twice")
                seen.add(target)
    return boxes


def target_groups(boxes: Sequence[Box]) -> dict[str, list[dict[str, object]]]:
    """file_sd content per service kind: one group per box running it (kinds without one: [])."""
    return {
        service: [
            {"targets": box.targets(service), "labels": {"box": box.name}}
            for box in boxes
            if service in box.ports
        ]
        for service in PORTS
    }


def write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    """Replace ``path`` by ``text`` in one rename; a reader sees the old file or the new one."""
    # A dot-name not ending in .json, so Prometheus' *.json glob never picks up the temporary file.
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def write_targets(boxes: Sequence[Box], out: Path) -> list[Path]:
    """Write every service kind's file under ``out``; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for service, groups in target_groups(boxes).items():
        path = out / f"{service}.json"
        write_atomically(path, json.dumps(groups, indent=2) + "\n")
        written.append(path)
    return written


def write_keys(keys: Path, environ: dict[str, str]) -> None:
    """The key files prometheus.yml names: from POSE_API_KEY / GPUOPT_API_KEY when set, else kept
    as they are, else empty (Prometheus then sends an empty bearer, which a keyless service ignores)."""
    keys.mkdir(parents=True, exist_ok=True)
    os.chmod(keys, 0o700)
    for service, variable in KEY_VARIABLES.items():
        path = keys / service
        if environ.get(variable):
            write_atomically(path, environ[variable].strip() + "\n", mode=0o600)
        elif not path.exists():
            write_atomically(path, "", mode=0o600)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--hosts", help="boxes separated by spaces, each with the default services")
    source.add_argument("--inventory", type=Path, help="inventory file (format: see this script's doc)")
    parser.add_argument("--out", type=Path, default=TARGETS_DIR, help="folder of the target files")
    parser.add_argument("--keys", type=Path, default=KEYS_DIR, help="folder of the API key files")
    parser.add_argument(
        "--if-missing", action="store_true", help="leave existing target files alone (make observe's default)"
    )
    args = parser.parse_args(argv)
    if args.if_missing and any(args.out.glob("*.json")):
        write_keys(args.keys, dict(os.environ))
        return 0
    try:
        if args.inventory is not None:
            try:
                lines = args.inventory.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as err:
                raise InventoryError(f"cannot read inventory {args.inventory}: {err}") from None
            boxes = parse_inventory(lines, str(args.inventory))
        else:
            boxes = parse_inventory(args.hosts.split(), "HOSTS")
    except InventoryError as err:
        print(f"fleet-targets: {err}; nothing written", file=sys.stderr)
        return 2
    write_keys(args.keys, dict(os.environ))
    for path in write_targets(boxes, args.out):
        count = sum(len(group["targets"]) for group in json.loads(path.read_text()))
        print(f"wrote {path} ({count} targets)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
