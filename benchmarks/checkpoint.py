"""Checkpoint save/load throughput: CheckpointManager against torch.save/torch.load and the raw disk.

All three write the same bytes and make them durable (fsync), so the ratios compare like with like;
reads start cold where the kernel allows it (POSIX_FADV_DONTNEED after fsync). Loads read into
fresh memory and assign the tensors (no copy into a model) for all three; ``raw_load_preallocated``
is reported beside them for reference. Ours also hashes every byte both ways (BLAKE3; with
``--with-sha256`` a second case hashes with SHA-256, as format-1 checkpoints did, for a before/after
in the same run). The cases take turns round by round, so drift in the machine's load does not
favour whichever case ran first; each ratio is the median of the per-round ratios (both cases of a
ratio ran under the same load), reported with its spread (min and max over the rounds), and each
speed with the spread of its rounds.
Every save writes a new file and the previous copy is deleted untimed, between cases: replacing
a 1 GiB file costs the disk a discard of its blocks (0.6 s on this machine's ext4 with
``discard``), and the manager deletes pruned checkpoints in a background thread, which must not
slow the next case down.  ``blake3_gbps`` and ``sha256_gbps`` (each hash over the same bytes in
memory, one thread) bound a verified load: with ``cores`` = 2, reading into fresh pages takes one
core and hashing the other, so the hash must be faster than the disk for a verified load to keep
up with ``torch.load``, which checks nothing.  The last output line is one JSON object.

    python benchmarks/checkpoint.py --size-gb 0.25 [--repeats 5] [--with-sha256]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3
import torch

from gpu_optimizer.checkpoints import CheckpointManager

TENSOR_BYTES = 64 << 20


class StateHolder:
    """A stand-in model: a flat state dict, loaded by assignment."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        self.state = state

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.state

    def load_state_dict(self, state: dict[str, Any], /) -> None:
        self.state = state


def drop_cache(path: Path) -> bool:
    """Ask the kernel to forget the cached pages of a file or of every file under a directory."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for file in files:
        fd = os.open(file, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return hasattr(os, "posix_fadvise")


Hook = Callable[[], object] | None


def interleaved(
    cases: dict[str, tuple[Callable[[], object], Hook, Hook]], repeats: int
) -> dict[str, list[float]]:
    """Seconds of each call of each case's function, ``before`` and ``after`` run untimed around it.

    The cases take turns (one run of each per round), so a change in the machine's load during the
    run (this benchmark shares its cores) hits every case alike instead of whichever ran last.
    """
    times: dict[str, list[float]] = {label: [] for label in cases}
    for _ in range(repeats):
        for label, (fn, before, after) in cases.items():
            if before:
                before()
            start = time.perf_counter()
            fn()
            times[label].append(time.perf_counter() - start)
            if after:
                after()
    return times


def speed(gib: float, seconds: list[float]) -> tuple[float, list[float]]:
    """Median GiB/s over the rounds, and [slowest, fastest]."""
    rates = [gib / t for t in seconds]
    return round(statistics.median(rates), 3), [round(min(rates), 3), round(max(rates), 3)]


def ratio(ours: list[float], other: list[float]) -> tuple[float, list[float]]:
    """Median over the rounds of other's time / ours (> 1: ours is faster), and [min, max]."""
    per_round = [o / u for u, o in zip(ours, other, strict=True)]
    return round(statistics.median(per_round), 3), [round(min(per_round), 3), round(max(per_round), 3)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=1.0, help="state dict size in GiB")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="where to write")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--with-sha256", action="store_true", help="also time ours hashing with SHA-256 (format 1)"
    )
    args = parser.parse_args()

    total = int(args.size_gb * (1 << 30))
    work = Path(tempfile.mkdtemp(prefix="bench-checkpoint-", dir=args.dir))
    try:
        blob = torch.randint(0, 256, (total,), dtype=torch.uint8)
        state = {
            f"layer{i}.weight": blob[off : off + TENSOR_BYTES].view(torch.float32)
            for i, off in enumerate(range(0, total - TENSOR_BYTES + 1, TENSOR_BYTES))
        }
        nbytes = sum(t.numel() * t.element_size() for t in state.values())
        gib = nbytes / 2**30
        results: dict[str, Any] = {
            "size_gib": round(gib, 3),
            "dir": str(args.dir),
            "repeats": args.repeats,
            "hash": "blake3",
        }

        raw_path = work / "raw.bin"
        raw = blob[:nbytes]

        def fresh(path: Path) -> Path:
            return path.with_name(f"new-{path.name}")

        def replace(path: Path) -> Callable[[], None]:
            # Untimed: the new copy takes the old one's place (and its blocks are freed) here.
            return lambda: os.replace(fresh(path), path)

        def raw_save() -> None:
            fd = os.open(fresh(raw_path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            view = raw.numpy().data
            written = 0
            while written < len(view):
                written += os.write(fd, view[written:])
            os.fsync(fd)
            os.close(fd)

        def raw_read(into: torch.Tensor) -> None:
            with open(raw_path, "rb", buffering=0) as f:
                view, got = into.numpy().data, 0
                while got < len(view):
                    got += f.readinto(view[got:]) or 0

        def raw_load() -> None:
            # Into fresh memory, as every loader must return new tensors (page faults included).
            raw_read(torch.empty(nbytes, dtype=torch.uint8))

        preallocated = torch.empty(nbytes, dtype=torch.uint8)

        torch_path = work / "state.pt"

        def torch_save() -> None:
            torch.save(state, fresh(torch_path))
            fd = os.open(fresh(torch_path), os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)

        def torch_load() -> None:
            loaded = torch.load(torch_path, weights_only=True, map_location="cpu")
            StateHolder({}).load_state_dict(loaded)

        holder = StateHolder(state)
        steps = iter(range(10**6))
        managers = {"ours": CheckpointManager(work, "bench", keep_last=1)}
        if args.with_sha256:
            managers["ours_sha256"] = CheckpointManager(
                work, "bench-sha256", keep_last=1, hash_algorithm="sha256"
            )

        def ours_save(manager: CheckpointManager) -> Callable[[], object]:
            return lambda: manager.save(next(steps), holder)

        def ours_load(manager: CheckpointManager) -> Callable[[], object]:
            # The checkpoint is named as a user resuming it would; load reads its manifest itself.
            return lambda: manager.load(latest[manager], StateHolder({}), restore_rng=False)

        def ours_cold(manager: CheckpointManager) -> Callable[[], object]:
            return lambda: drop_cache(manager.list()[-1].path)

        save_cases: dict[str, tuple[Callable[[], object], Hook, Hook]] = {
            "raw": (raw_save, None, replace(raw_path)),
            "torch": (torch_save, None, replace(torch_path)),
        }
        save_cases |= {label: (ours_save(m), None, m.wait) for label, m in managers.items()}
        saves = interleaved(save_cases, args.repeats)
        load_cases: dict[str, tuple[Callable[[], object], Hook, Hook]] = {
            "raw": (raw_load, lambda: drop_cache(raw_path), None),
            "torch": (torch_load, lambda: drop_cache(torch_path), None),
            "raw_load_preallocated": (lambda: raw_read(preallocated), lambda: drop_cache(raw_path), None),
        }
        load_cases |= {label: (ours_load(m), ours_cold(m), None) for label, m in managers.items()}
        latest = {m: m.list()[-1].name for m in managers.values()}
        loads = interleaved(load_cases, args.repeats)
        for label in ("raw", "torch", *managers):
            for op, times in (("save", saves), ("load", loads)):
                results[f"{label}_{op}_gbps"], results[f"{label}_{op}_gbps_spread"] = speed(gib, times[label])
        results["raw_load_preallocated_gbps"] = speed(gib, loads["raw_load_preallocated"])[0]
        # The bound of a verified load: every byte is read (kernel copy into fresh pages) and hashed.
        for name, hasher in (("blake3", lambda: blake3.blake3()), ("sha256", hashlib.sha256)):
            hash_seconds = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                hasher().update(raw.numpy().data)
                hash_seconds.append(time.perf_counter() - start)
            results[f"{name}_gbps"] = speed(gib, hash_seconds)[0]
        results["cores"] = os.cpu_count()
        for manager in managers.values():
            loaded = StateHolder({})
            manager.load(manager.list()[-1], loaded, restore_rng=False)
            same = all(
                torch.equal(loaded.state[k].view(torch.uint8), v.view(torch.uint8)) for k, v in state.items()
            )
            assert same, "round trip changed bytes"
            manager.close()

        for label in managers:
            prefix = "" if label == "ours" else f"{label}_"
            for op, times in (("save", saves), ("load", loads)):
                for other in ("raw", "torch"):
                    key = f"{prefix}{op}_vs_{other}"
                    results[key], results[f"{key}_spread"] = ratio(times[label], times[other])
        results["page_cache_dropped"] = hasattr(os, "posix_fadvise")
        print(json.dumps(results))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
