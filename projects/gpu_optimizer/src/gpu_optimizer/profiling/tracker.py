"""Follow tensor storages alive during a training step to find the peak without a GPU.

`StorageTracker` is a `TorchDispatchMode`: every tensor an operation returns is looked up by its
storage; a storage seen for the first time counts as allocated and a `weakref.finalize` on it
counts it as freed. Run under `FakeTensorMode` no memory is touched, yet the storages have their
real sizes and lifetimes, so the peak and its composition come out as on a device. The tracker
also installs `saved_tensors_hooks` (bytes saved for backward) and forward hooks that attribute
those bytes to the innermost running module.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.hooks import RemovableHandle

from gpu_optimizer.profiling.kernel_scratch import SCRATCH_OPS, KernelCall, measure_scratch
from gpu_optimizer.profiling.report import Phase


def storage_key(tensor: torch.Tensor) -> int:
    """Identity of the storage behind `tensor` (shared by all its views) while it is alive."""
    return int(tensor.untyped_storage()._cdata)


def storage_nbytes(tensor: torch.Tensor) -> int:
    return int(tensor.untyped_storage().nbytes())


@dataclass
class StorageRecord:
    """One storage seen by the tracker. `uid` stays unique when an address is reused after a free."""

    uid: int
    nbytes: int
    phase: Phase
    module: str | None
    kind: str


class StorageTracker(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """Live storage bytes and their peak over the operations run inside the mode.

    Use `register` for storages that exist before tracking (parameters, inputs), `set_phase` as
    the step moves on, and `track_module_forward(model)` / `saved_tensor_hooks()` around forward.
    """

    def __init__(self, *, kernel_scratch: bool = False) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        # With kernel_scratch, convolution calls are noted so that `add_kernel_scratch` can add
        # what their CPU kernels allocate internally (see kernel_scratch.py).
        self.kernel_calls: list[tuple[int, Phase, str | None, KernelCall]] | None = (
            [] if kernel_scratch else None
        )
        self.records: dict[int, StorageRecord] = {}
        self._live: dict[int, int] = {}  # storage key -> uid
        self._next_uid = 0
        self.live_bytes = 0
        self.peak_bytes = 0
        # Timeline of allocations (+uid) and frees (-uid - 1), replayed to compute peaks per kind.
        self.events: list[int] = []
        self.phase: Phase = "setup"
        self._module_stack: list[str] = []
        self.saved_uids: dict[int, str | None] = {}  # uid -> module that saved it first

    @property
    def current_module(self) -> str | None:
        return self._module_stack[-1] if self._module_stack else None

    def set_phase(self, phase: Phase) -> None:
        self.phase = phase

    def register(self, tensors: Iterable[torch.Tensor], kind: str) -> None:
        """Count `tensors` (deduplicated by storage) as live with `kind`, if not seen yet."""
        for t in tensors:
            self._observe(t, kind)

    def uid_of(self, tensor: torch.Tensor) -> int | None:
        return self._live.get(storage_key(tensor))

    def _observe(self, tensor: torch.Tensor, kind: str) -> None:
        storage = tensor.untyped_storage()
        key = int(storage._cdata)
        if key in self._live:
            return
        uid = self._next_uid
        self._next_uid += 1
        nbytes = int(storage.nbytes())
        self.records[uid] = StorageRecord(uid, nbytes, self.phase, self.current_module, kind)
        self._live[key] = uid
        weakref.finalize(storage, self._free, key, uid)
        self.events.append(uid)
        self.live_bytes += nbytes
        self.peak_bytes = max(self.peak_bytes, self.live_bytes)

    def replay(self, size: Callable[[StorageRecord], int]) -> tuple[int, StorageRecord | None, list[int]]:
        """Peak of the live bytes when each storage weighs `size(record)` (0: not counted).

        Returns the peak bytes, the record allocated when the peak was reached (its phase and
        module say when), and the uids live at the peak.
        """
        current = peak = 0
        peak_index = -1
        for index, event in enumerate(self.events):
            record = self.records[event if event >= 0 else -event - 1]
            nbytes = size(record)
            current += nbytes if event >= 0 else -nbytes
            if current > peak:
                peak, peak_index = current, index
        live: set[int] = set()
        for event in self.events[: peak_index + 1]:
            uid = event if event >= 0 else -event - 1
            if size(self.records[uid]):
                if event >= 0:
                    live.add(uid)
                else:
                    live.discard(uid)
        peak_record = self.records[self.events[peak_index]] if peak_index >= 0 else None
        return peak, peak_record, sorted(live)

    def allocation_events(self, size: Callable[[StorageRecord], int]) -> Iterator[tuple[int, int]]:
        """The timeline as (uid, bytes) allocations and (uid, -1) frees, storages of size 0 left out."""
        for event in self.events:
            uid = event if event >= 0 else -event - 1
            nbytes = size(self.records[uid])
            if nbytes:
                yield (uid, nbytes) if event >= 0 else (uid, -1)

    def _free(self, key: int, uid: int) -> None:
        if self._live.get(key) == uid:
            del self._live[key]
            self.events.append(-uid - 1)
            self.live_bytes -= self.records[uid].nbytes

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        for leaf in tree_flatten(out)[0]:
            if isinstance(leaf, torch.Tensor):
                self._observe(leaf, "temporaries")
        if self.kernel_calls is not None and func in SCRATCH_OPS:
            call = KernelCall.of(func, args)
            self.kernel_calls.append((len(self.events), self.phase, self.current_module, call))
        return out

    def add_kernel_scratch(self) -> int:
        """Measure the noted kernels' internal scratch on this CPU and splice it into the timeline
        as allocations freed at once, right after each call's outputs. Returns the largest."""
        if not self.kernel_calls:
            return 0
        scratch = measure_scratch([call for *_, call in self.kernel_calls])
        inserts: dict[int, list[int]] = {}
        for index, phase, module, call in self.kernel_calls:
            if nbytes := scratch[call]:
                uid = self._next_uid
                self._next_uid += 1
                self.records[uid] = StorageRecord(uid, nbytes, phase, module, "temporaries")
                inserts.setdefault(index, []).extend((uid, -uid - 1))
        events: list[int] = []
        for position, event in enumerate(self.events):
            events.extend(inserts.get(position, ()))
            events.append(event)
        events.extend(inserts.get(len(self.events), ()))
        self.events = events
        self.kernel_calls = []
        return max(scratch.values(), default=0)

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        self._observe(tensor, "temporaries")
        uid = self._live[storage_key(tensor)]
        self.saved_uids.setdefault(uid, self.current_module)
        return tensor

    def saved_tensor_hooks(self) -> AbstractContextManager[None]:
        """Context that records every tensor autograd saves for backward."""
        return torch.autograd.graph.saved_tensors_hooks(self._pack, _unpack)

    @contextmanager
    def track_module_forward(self, model: torch.nn.Module) -> Iterator[None]:
        """Keep the name of the innermost module in forward while the context is open."""
        handles: list[RemovableHandle] = []
        for name, module in model.named_modules():
            handles.append(module.register_forward_pre_hook(self._enter(name)))
            handles.append(module.register_forward_hook(self._leave(name), always_call=True))
        try:
            yield
        finally:
            for h in handles:
                h.remove()
            self._module_stack.clear()

    def _enter(self, name: str) -> Callable[..., None]:
        def hook(module: torch.nn.Module, args: Any) -> None:
            self._module_stack.append(name)

        return hook

    def _leave(self, name: str) -> Callable[..., None]:
        def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
            if self._module_stack and self._module_stack[-1] == name:
                self._module_stack.pop()

        return hook


def _unpack(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


@contextmanager
def tracking(tracker: StorageTracker, model: torch.nn.Module) -> Iterator[None]:
    """Open the tracker, the module-name hooks and the saved-tensor hooks together."""
    with ExitStack() as stack:
        stack.enter_context(tracker)
        stack.enter_context(tracker.track_module_forward(model))
        stack.enter_context(tracker.saved_tensor_hooks())
        yield
