"""Swap-out + swap-in throughput of TensorSwapper against plain copies of the same bytes.

host: each round trip moves a tensor device -> host and another host -> device, against two
``copy_`` calls into preallocated buffers; disk: the same through swap files, against a raw file
write plus read; on CUDA also ``pinned``: against pinned non_blocking copies. The last output line
is one JSON object.

    python benchmarks/swap.py --size-mb 256
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from gpu_optimizer.swapping import TensorSwapper


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, rounds: int) -> float:
    """Median seconds per call of ``fn`` after one warm-up call."""
    fn()
    sync(device)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def swapper_round_trip(
    device: torch.device, nbytes: int, host_budget: int, directory: Path, rounds: int
) -> float:
    """Seconds per get() that swaps one tensor in and the other out (device holds one of two)."""
    with TensorSwapper(
        device_budget=nbytes, host_budget=host_budget, swap_dir=directory, device=device
    ) as swapper:
        swapper.register("a", torch.ones(nbytes, dtype=torch.uint8, device=device))
        swapper.register("b", torch.ones(nbytes, dtype=torch.uint8, device=device))
        names = iter(["a", "b"] * (rounds + 2))
        return timed(lambda: swapper.get(next(names)), device, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    nbytes = args.size_mb << 20
    gb = 2 * nbytes / 1e9  # every round trip moves the bytes out and back in
    results: dict[str, object] = {"device": str(device), "size_mb": args.size_mb, "rounds": args.rounds}
    source = torch.ones(nbytes, dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    pinned = torch.cuda.is_available()

    host = torch.empty(nbytes, dtype=torch.uint8, pin_memory=pinned)

    def plain_copy() -> None:
        host.copy_(source)
        target.copy_(host)

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        directory = Path(tmp)
        raw_path = directory / "raw.bin"
        staging = torch.empty(nbytes, dtype=torch.uint8)

        def raw_file() -> None:
            data = source.cpu() if device.type == "cuda" else source
            fd = os.open(raw_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.write(fd, data.numpy().data)
            os.close(fd)
            with open(raw_path, "rb", buffering=0) as f:
                f.readinto(staging.numpy().data)
            target.copy_(staging)

        copy_s = timed(plain_copy, device, args.rounds)
        raw_s = timed(raw_file, device, args.rounds)
        host_s = swapper_round_trip(device, nbytes, 2 * nbytes, directory, args.rounds)
        disk_s = swapper_round_trip(device, nbytes, 0, directory, args.rounds)

    results |= {
        "copy_gbps": round(gb / copy_s, 3),
        "raw_file_gbps": round(gb / raw_s, 3),
        "host_gbps": round(gb / host_s, 3),
        "disk_gbps": round(gb / disk_s, 3),
        "host_vs_copy": round(copy_s / host_s, 3),
        "disk_vs_copy": round(raw_s / disk_s, 3),
    }
    if device.type == "cuda":

        def pinned_copy() -> None:
            host.copy_(source, non_blocking=True)
            target.copy_(host, non_blocking=True)

        pinned_s = timed(pinned_copy, device, args.rounds)
        results["pinned_copy_gbps"] = round(gb / pinned_s, 3)
        results["pinned_vs_copy"] = round(pinned_s / host_s, 3)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
