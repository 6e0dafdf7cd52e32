"""Seconds and peak RSS to estimate the 7B preset's training step with each sharding option.

Each option runs in its own process so that its peak RSS (ru_maxrss, imports included) is its
own. Goal: under 10 s and under 1 GiB each. The last output line is one JSON object.

    python benchmarks/estimate.py --world-size 8
    python benchmarks/estimate.py --seq 512      # shorter sequence while developing
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

SHARDINGS = ("none", "ddp", "zero1", "zero2", "zero3", "fsdp")
GOAL_S = 10.0
GOAL_RSS = 1024**3


def one(sharding: str, world_size: int, seq: int, batch: int, precision: str) -> dict[str, object]:
    """Estimate once in this process; returns seconds, peak RSS and the estimate's figures."""
    started = time.perf_counter()
    import torch

    from gpu_optimizer.profiling import StepOptions, estimate, get_model_spec, model_source
    from gpu_optimizer.profiling.setup import PRECISIONS

    spec = get_model_spec("gpt-7b")
    dtype, autocast = PRECISIONS[precision]
    report = estimate(
        model_source(spec),
        (seq,),
        batch_size=batch,
        dtype=dtype,
        device="cuda",
        input_dtype=torch.long,
        loss_fn=spec.loss_fn,
        options=StepOptions(
            autocast_dtype=autocast,
            sharding=sharding,  # type: ignore[arg-type]
            world_size=1 if sharding == "none" else world_size,
        ),
    )
    seconds = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "sharding": sharding,
        "seconds": round(seconds, 3),
        "estimate_seconds": report.elapsed_s,
        "peak_rss_bytes": rss,
        "peak_bytes": report.peak_bytes,
        "reserved_peak_bytes": report.reserved_peak_bytes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world-size", type=int, default=8)
    parser.add_argument("--seq", type=int, default=4096, help="tokens per sequence (preset: 4096)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument(
        "--precision", default="bf16", choices=["fp32", "bf16", "fp16", "amp-bf16", "amp-fp16"]
    )
    parser.add_argument("--only", choices=SHARDINGS, help="run one option in this process (internal)")
    args = parser.parse_args()
    if args.only:
        print(json.dumps(one(args.only, args.world_size, args.seq, args.batch, args.precision)))
        return
    rows = []
    for sharding in SHARDINGS:
        cmd = [sys.executable, __file__, "--only", sharding, "--world-size", str(args.world_size)]
        cmd += ["--seq", str(args.seq), "--batch", str(args.batch), "--precision", args.precision]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{sharding:>6}: {row['seconds']:6.2f} s, RSS {row['peak_rss_bytes'] / 1024**2:7.1f} MiB, "
            f"peak per rank {row['peak_bytes'] / 1024**3:6.2f} GiB"
        )
        rows.append(row)
    result = {
        "benchmark": "estimate",
        "model": "gpt-7b",
        "seq": args.seq,
        "batch": args.batch,
        "precision": args.precision,
        "world_size": args.world_size,
        "options": rows,
        "max_seconds": max(r["seconds"] for r in rows),
        "max_peak_rss_bytes": max(r["peak_rss_bytes"] for r in rows),
        "goal_met": all(r["seconds"] < GOAL_S and r["peak_rss_bytes"] < GOAL_RSS for r in rows),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
