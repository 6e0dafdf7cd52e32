"""TensorSwapper: named tensors kept within a device budget, spilling least-recently-used ones to
host memory and then to disk, and brought back on access or ahead of use."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from gpu_optimizer.swapping.entry import SwapCounters, SwapEntry
from gpu_optimizer.swapping.errors import (
    DuplicateTensorError,
    SwapClosedError,
    SwapError,
    TensorTooLargeError,
    UnknownTensorError,
)
from gpu_optimizer.swapping.pool import BufferPool
from gpu_optimizer.swapping.tiers import DiskTier, Tier


class TensorSwapper:
    """Keep named tensors within ``device_budget`` bytes on the compute device.

    Least-recently-used tensors move to the host tier (pinned memory when the device is CUDA) and,
    beyond ``host_budget`` (which also bounds the reusable buffer pool), to one file each in
    ``swap_dir``. A tensor returned by :meth:`get` is valid until the next call that may evict it;
    do not keep it across such calls. Not thread-safe: use it from one thread.
    """

    def __init__(
        self,
        device_budget: int,
        host_budget: int,
        swap_dir: Path | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        if device_budget < 0 or host_budget < 0:
            raise ValueError("budgets must be >= 0 bytes")
        self.device = torch.device(
            device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
        )
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.budgets = {Tier.DEVICE: device_budget, Tier.HOST: host_budget}
        self._cuda = self.device.type == "cuda"
        self._owns_dir = swap_dir is None
        self.disk = DiskTier(
            Path(tempfile.mkdtemp(prefix="gpu-optimizer-swap-")) if swap_dir is None else swap_dir
        )
        self._tiers: dict[Tier, OrderedDict[str, SwapEntry]] = {t: OrderedDict() for t in Tier}
        self._used = dict.fromkeys(Tier, 0)
        self._pool = BufferPool()
        # CPU device tier only: the CUDA caching allocator already reuses device memory.
        self._device_pool = BufferPool()
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="swap-io")
        self._stream = torch.cuda.Stream(self.device) if self._cuda else None  # type: ignore[no-untyped-call]
        self._next_slot = 0
        self._closed = False
        self.counters = SwapCounters()

    def register(self, name: str, tensor: torch.Tensor, tier: Tier = Tier.DEVICE) -> None:
        """Take ``tensor`` (on the swapper's device) under ``name``, placed in ``tier``.

        Raises:
            DuplicateTensorError: the name is taken.
            TensorTooLargeError: the tensor exceeds the device budget, so it could never be used.
            ValueError: the tensor is on another device.
        """
        self._check_open()
        if name in self:
            raise DuplicateTensorError(f"a tensor named {name!r} is already registered")
        if tensor.device != self.device:
            raise ValueError(
                f"tensor {name!r} is on device {tensor.device}, the swapper manages {self.device}"
            )
        nbytes = tensor.numel() * tensor.element_size()
        if nbytes > self.budgets[Tier.DEVICE]:
            raise TensorTooLargeError(
                f"tensor {name!r} has {nbytes} bytes, over the device budget of {self.budgets[Tier.DEVICE]}"
            )
        data = tensor.detach().contiguous()
        entry = SwapEntry(name, data.shape, data.dtype, nbytes, self._next_slot, Tier.DEVICE)
        self._next_slot += 1
        self._make_room(Tier.DEVICE, nbytes, protect={name})
        entry.data = data
        self._add(entry, Tier.DEVICE)
        if tier is not Tier.DEVICE:
            self._evict(entry, to_disk=tier is Tier.DISK, count=False)

    def get(self, name: str) -> torch.Tensor:
        """The tensor on the device, swapped in if needed; it becomes the most recently used."""
        entry = self._entry(name)
        if entry.tier is not Tier.DEVICE:
            self._swap_in(entry, protect={name}, background=False)
        self._finish(entry)
        self._tiers[Tier.DEVICE].move_to_end(name)
        assert entry.data is not None
        return entry.data

    def prefetch(self, names: Iterable[str]) -> list[str]:
        """Start bringing ``names`` to the device without waiting (CUDA: a side stream; CPU: disk reads
        in a background thread). Names come in order of need: it stops at the first one that no
        longer fits beside those before it.

        Returns:
            The names now on the device or on their way.
        """
        wanted = list(dict.fromkeys(names))
        entries = [self._entry(n) for n in wanted]
        started: list[str] = []
        for entry in entries:
            if entry.tier is not Tier.DEVICE:
                try:
                    # Earlier names win: only what this call already placed is protected.
                    self._swap_in(entry, protect={*started, entry.name}, background=True)
                except SwapError:
                    break
            self._tiers[Tier.DEVICE].move_to_end(entry.name)
            started.append(entry.name)
        return started

    def tier_of(self, name: str) -> Tier:
        """The tier holding ``name``."""
        return self._entry(name).tier

    def unregister(self, name: str) -> None:
        """Forget ``name`` and free its memory or file.

        Raises:
            UnknownTensorError: nothing is registered under that name.
        """
        entry = self._entry(name)
        self._finish(entry)
        self._remove(entry)
        if entry.tier is Tier.HOST and entry.data is not None:
            self._pool.give(entry.data.reshape(-1).view(torch.uint8))
            self._trim_pool()
        elif entry.tier is Tier.DISK:
            self.disk.remove(entry.slot)
        entry.data = None

    def discard(self, name: str) -> None:
        """:meth:`unregister` if registered; no error otherwise."""
        if not self._closed and name in self:
            self.unregister(name)

    def stats(self) -> dict[str, Any]:
        """Bytes and tensor counts per tier, swaps in and out per tier, bytes moved and throughput."""
        return {
            "device": str(self.device),
            "tiers": {
                t.value: {
                    "bytes": self._used[t],
                    "tensors": len(self._tiers[t]),
                    "budget": self.budgets.get(t),
                    "swaps_in": self.counters.swaps_in[t],
                    "swaps_out": self.counters.swaps_out[t],
                }
                for t in Tier
            },
            "host_pool_bytes": self._pool.bytes,
            "device_pool_bytes": self._device_pool.bytes,
            "bytes_moved": self.counters.bytes_moved,
            "move_seconds": self.counters.move_seconds,
            "throughput_bytes_per_s": self.counters.throughput_bytes_per_s,
        }

    def close(self) -> None:
        """Unregister everything, stop the I/O thread and remove the swap files (and the directory
        if the swapper created it)."""
        if self._closed:
            return
        for tier in Tier:
            for name in list(self._tiers[tier]):
                self.unregister(name)
        self._pool.drop(self._pool.bytes)
        self._device_pool.drop(self._device_pool.bytes)
        self._io.shutdown(wait=True)
        self._closed = True
        if self._owns_dir:
            shutil.rmtree(self.disk.directory, ignore_errors=True)

    def __enter__(self) -> TensorSwapper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __contains__(self, name: object) -> bool:
        return any(name in entries for entries in self._tiers.values())

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._tiers.values())

    # -- moves --------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise SwapClosedError("the swapper is closed")

    def _entry(self, name: str) -> SwapEntry:
        self._check_open()
        for entries in self._tiers.values():
            if name in entries:
                return entries[name]
        raise UnknownTensorError(f"no tensor named {name!r} is registered")

    def _add(self, entry: SwapEntry, tier: Tier) -> None:
        entry.tier = tier
        self._tiers[tier][entry.name] = entry
        self._used[tier] += entry.nbytes

    def _remove(self, entry: SwapEntry) -> None:
        del self._tiers[entry.tier][entry.name]
        self._used[entry.tier] -= entry.nbytes

    def _trim_pool(self) -> None:
        excess = self._used[Tier.HOST] + self._pool.bytes - self.budgets[Tier.HOST]
        if excess > 0:
            self._pool.drop(excess)

    def _make_room(self, tier: Tier, nbytes: int, protect: set[str]) -> None:
        """Evict least-recently-used tensors of ``tier`` until ``nbytes`` more fit in its budget."""
        budget = self.budgets[tier]
        if nbytes > budget:
            raise TensorTooLargeError(f"{nbytes} bytes exceed the {tier.value} budget of {budget}")
        pool = self._pool if tier is Tier.HOST else self._device_pool
        while self._used[tier] + pool.bytes + nbytes > budget:
            if pool.bytes:
                pool.drop(self._used[tier] + pool.bytes + nbytes - budget)
            else:
                self._evict(self._victim(tier, nbytes, protect), to_disk=tier is Tier.HOST)

    def _victim(self, tier: Tier, nbytes: int, protect: set[str]) -> SwapEntry:
        victim = next((e for n, e in self._tiers[tier].items() if n not in protect), None)
        if victim is None:
            raise SwapError(f"cannot make {nbytes} bytes of room in the {tier.value} tier")
        return victim

    def _host_buffer(self, entry: SwapEntry, protect: set[str]) -> torch.Tensor:
        """A host tensor for ``entry`` within the host budget: a pooled buffer of the same size if
        there is one, else a new one after dropping pooled buffers and spilling LRU tensors to disk."""
        budget, nbytes = self.budgets[Tier.HOST], entry.nbytes
        while True:
            buffer = self._pool.take(nbytes)
            if buffer is not None:
                break
            if self._used[Tier.HOST] + self._pool.bytes + nbytes <= budget:
                buffer = torch.empty(nbytes, dtype=torch.uint8, pin_memory=self._cuda)
                break
            if self._pool.bytes:
                self._pool.drop(self._used[Tier.HOST] + self._pool.bytes + nbytes - budget)
            else:
                self._evict(self._victim(Tier.HOST, nbytes, protect), to_disk=True)
        return buffer.view(entry.dtype).view(entry.shape)

    def _device_buffer(self, entry: SwapEntry, protect: set[str]) -> torch.Tensor:
        """A device tensor for ``entry`` within the device budget (pooled on CPU, see _sole_owner)."""
        budget, nbytes = self.budgets[Tier.DEVICE], entry.nbytes
        if nbytes > budget:
            raise TensorTooLargeError(f"{nbytes} bytes exceed the device budget of {budget}")
        while True:
            buffer = self._device_pool.take(nbytes)
            if buffer is not None:
                # A fresh tensor on the pooled storage, not a view: no base tensor keeps a second
                # reference to the storage, so _sole_owner can recognise it again later.
                fresh = torch.empty(0, dtype=entry.dtype, device=buffer.device)
                stride = torch.empty(entry.shape, dtype=entry.dtype, device="meta").stride()
                return fresh.set_(buffer.untyped_storage(), 0, entry.shape, stride)
            if self._used[Tier.DEVICE] + self._device_pool.bytes + nbytes <= budget:
                break
            if self._device_pool.bytes:
                excess = self._used[Tier.DEVICE] + self._device_pool.bytes + nbytes - budget
                self._device_pool.drop(excess)
            else:
                self._evict(self._victim(Tier.DEVICE, nbytes, protect), to_disk=False)
        if self._stream is not None:
            with torch.cuda.stream(self._stream):
                return torch.empty(entry.shape, dtype=entry.dtype, device=self.device)
        return torch.empty(entry.shape, dtype=entry.dtype, device=self.device)

    def _sole_owner(self, entry: SwapEntry) -> bool:
        """Whether nothing outside the swapper can see the memory of a CPU device-tier tensor, so
        its buffer may be reused: no other Python reference to the tensor, no view of its storage."""
        use_count = getattr(torch._C, "_storage_Use_Count", None)
        tensor = entry.data
        if self._cuda or use_count is None or tensor is None:
            return False
        storage = tensor.untyped_storage()
        if storage.nbytes() != entry.nbytes or tensor.storage_offset() != 0:
            return False
        # References: entry.data, the local `tensor`, getrefcount's argument; storage: the tensor
        # and the local `storage` object.
        return sys.getrefcount(tensor) == 3 and int(use_count(storage._cdata)) == 2

    def _evict(self, entry: SwapEntry, to_disk: bool, count: bool = True) -> None:
        """Move ``entry`` one tier down: device to host (or disk when it cannot fit there), host to disk."""
        self._finish(entry)
        start = time.perf_counter()
        src = entry.tier
        recycle = src is Tier.DEVICE and self._sole_owner(entry)
        assert entry.data is not None
        old = entry.data
        if not to_disk and entry.nbytes <= self.budgets[Tier.HOST]:
            self._remove(entry)
            host = self._host_buffer(entry, protect={entry.name})
            host.copy_(entry.data)
            entry.data = host
            self._add(entry, Tier.HOST)
        else:
            self._remove(entry)
            data = entry.data if entry.data.device.type == "cpu" else entry.data.cpu()
            self.disk.write(entry.slot, data)
            if src is Tier.HOST:
                self._pool.give(entry.data.reshape(-1).view(torch.uint8))
                self._trim_pool()
            entry.data = None
            self._add(entry, Tier.DISK)
        if recycle:
            self._device_pool.give(old.reshape(-1).view(torch.uint8))
        del old
        if count:
            self.counters.count(src, entry.tier, entry.nbytes, time.perf_counter() - start)

    def _swap_in(self, entry: SwapEntry, protect: set[str], background: bool) -> None:
        """Bring ``entry`` to the device tier; ``background`` starts the copy without waiting."""
        start = time.perf_counter()
        src = entry.tier
        self._remove(entry)
        try:
            dst = self._device_buffer(entry, protect)
        except BaseException:
            self._add(entry, src)
            raise
        if src is Tier.HOST:
            assert entry.data is not None
            host = entry.data
            if self._stream is not None and background:
                with torch.cuda.stream(self._stream):
                    dst.copy_(host, non_blocking=True)
                    entry.event = torch.cuda.Event()  # type: ignore[no-untyped-call]
                    entry.event.record(self._stream)
                entry.staging = host
            else:
                dst.copy_(host)
                self._pool.give(host.reshape(-1).view(torch.uint8))
                self._trim_pool()
        else:
            slot = entry.slot
            staging = torch.empty(entry.shape, dtype=entry.dtype, pin_memory=True) if self._cuda else dst
            entry.staging = staging if self._cuda else None
            entry.event = torch.cuda.Event() if self._cuda else None  # type: ignore[no-untyped-call]
            event, stream = entry.event, self._stream

            def load() -> None:
                self.disk.read_into(slot, staging)
                self.disk.remove(slot)
                if stream is not None:
                    with torch.cuda.stream(stream):
                        dst.copy_(staging, non_blocking=True)
                        event.record(stream)

            if background:
                entry.pending = self._io.submit(load)
            else:
                load()
        entry.data = dst
        self._add(entry, Tier.DEVICE)
        self.counters.count(src, Tier.DEVICE, entry.nbytes, time.perf_counter() - start)

    def _finish(self, entry: SwapEntry) -> None:
        """Wait for an in-flight prefetch of ``entry`` and release what it held."""
        if entry.pending is not None:
            pending, entry.pending = entry.pending, None
            try:
                pending.result()
            except OSError as exc:
                raise SwapError(f"reading {entry.name!r} back from disk failed: {exc}") from exc
        if entry.event is not None:
            assert entry.data is not None
            current = torch.cuda.current_stream(self.device)
            current.wait_event(entry.event)
            entry.data.record_stream(current)
            if entry.staging is not None:
                # The CPU may refill the host buffer next, so the copy out of it must be complete.
                entry.event.synchronize()
                self._pool.give(entry.staging.reshape(-1).view(torch.uint8))
                self._trim_pool()
            entry.event = None
            entry.staging = None
