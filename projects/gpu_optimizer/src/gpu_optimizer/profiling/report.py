"""Result types of the memory profiler: plain dataclasses that serialise to JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

Phase = Literal["setup", "forward", "backward", "optimizer"]
MemoryKind = Literal[
    "parameters",
    "buffers",
    "gradients",
    "optimizer_state",
    "inputs",
    "activations",
    "temporaries",
    "sharding",
]
MEMORY_KINDS: tuple[MemoryKind, ...] = get_args(MemoryKind)


@dataclass(frozen=True)
class ModuleMemory:
    """Bytes owned by one module itself (children not included).

    `activations` are the bytes saved for backward by operations that ran while this module
    was the innermost one in forward.
    """

    name: str
    parameters: int = 0
    gradients: int = 0
    optimizer_state: int = 0
    activations: int = 0

    @property
    def total(self) -> int:
        return self.parameters + self.gradients + self.optimizer_state + self.activations


@dataclass(frozen=True)
class Recommendation:
    """A change to the training setup and its predicted effect on the peak (bytes, from a re-estimate)."""

    kind: Literal["mixed_precision", "activation_checkpointing", "optimizer_offload", "gradient_accumulation"]
    description: str
    predicted_peak_bytes: int
    bytes_saved: int
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MemoryReport:
    """Memory of one training step (forward, backward, optimizer step) of a model.

    `peak_breakdown` splits `peak_bytes` by kind at the moment of the peak; the `*_bytes` totals
    are steady-state sizes: parameters and buffers, gradients after backward, optimizer state
    after a step, and the bytes saved for backward (activations, parameter storages excluded).
    With sharding every figure at the peak is one rank's (`world_size` ranks). For an estimate,
    `allocated_peak_bytes` and `reserved_peak_bytes` replay the step through a model of the CUDA
    caching allocator (512-byte rounding, segments), what `torch.cuda.max_memory_allocated` and
    `max_memory_reserved` report; a measured report fills them from the allocator itself.
    """

    model: str
    method: Literal["estimate", "measured"]
    device: str
    dtype: str
    optimizer: str
    batch_size: int
    input_shape: tuple[int, ...]
    peak_bytes: int
    peak_phase: Phase
    peak_module: str | None
    peak_breakdown: dict[str, int]
    parameter_bytes: int
    buffer_bytes: int
    gradient_bytes: int
    optimizer_state_bytes: int
    activation_bytes: int
    parameter_count: int
    modules: list[ModuleMemory] = field(default_factory=list)
    recommendations: list[Recommendation] = field(default_factory=list)
    elapsed_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    allocated_peak_bytes: int | None = None
    reserved_peak_bytes: int | None = None
    sharding: str = "none"
    world_size: int = 1

    def modules_by_depth(self, depth: int) -> list[ModuleMemory]:
        """Aggregate the per-module figures onto module names of at most `depth` dotted parts.

        Returns the aggregates sorted by total bytes, largest first; the root module is named "".
        Raises ValueError for a negative depth.
        """
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        sums: dict[str, list[int]] = {}
        for m in self.modules:
            key = ".".join(m.name.split(".")[:depth]) if m.name else ""
            acc = sums.setdefault(key, [0, 0, 0, 0])
            acc[0] += m.parameters
            acc[1] += m.gradients
            acc[2] += m.optimizer_state
            acc[3] += m.activations
        out = [ModuleMemory(k, *v) for k, v in sums.items()]
        return sorted(out, key=lambda m: m.total, reverse=True)

    def fits(self, budget_bytes: int) -> bool:
        """True when the peak stays within `budget_bytes`."""
        return self.peak_bytes <= budget_bytes

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (tuples become lists)."""
        data = asdict(self)
        data["input_shape"] = list(self.input_shape)
        return data
