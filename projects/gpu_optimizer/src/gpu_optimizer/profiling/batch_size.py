"""Find the largest batch size that fits a memory budget: doubling, then binary search.

The search only calls a "does batch b fit?" probe, so it is tested with any fit function; the
probes here answer with the estimator against a budget (`estimator_probe`) or with real steps on
a CUDA device (`CudaStepProbe`), which recover from out-of-memory errors.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from gpu_optimizer.profiling.estimator import LossFn, ModelSource, estimate, materialise, sum_loss
from gpu_optimizer.profiling.measure import make_inputs, require_cuda
from gpu_optimizer.profiling.optimizers import OPTIMIZER_STATES

FitProbe = Callable[[int], bool]


class NoBatchFitsError(ValueError):
    """Even the smallest batch size does not fit the budget."""


@dataclass
class BatchSearch:
    """Outcome of a search: the batch size and every probe made, in order."""

    batch_size: int
    probes: list[tuple[int, bool]] = field(default_factory=list)
    peak_bytes: dict[int, int] = field(default_factory=dict)
    budget_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["probes"] = [list(p) for p in self.probes]
        data["peak_bytes"] = {str(k): v for k, v in self.peak_bytes.items()}
        return data


def find_max_batch(fits: FitProbe, *, start: int = 1, limit: int = 65_536) -> BatchSearch:
    """The largest batch size in [start, limit] for which `fits` holds, assuming it is monotone.

    Doubles from `start` until a probe fails (or `limit`), then bisects between the last size
    that fit and the first that did not. Raises NoBatchFitsError when `start` does not fit and
    ValueError for a bad range.
    """
    if start < 1 or limit < start:
        raise ValueError(f"need 1 <= start <= limit, got start={start}, limit={limit}")
    search = BatchSearch(batch_size=0)

    def probe(b: int) -> bool:
        ok = bool(fits(b))
        search.probes.append((b, ok))
        return ok

    if not probe(start):
        raise NoBatchFitsError(f"batch size {start} does not fit")
    good, bad = start, None
    while bad is None and good < limit:
        nxt = min(good * 2, limit)
        if probe(nxt):
            good = nxt
        else:
            bad = nxt
    if bad is not None:
        while bad - good > 1:
            mid = (good + bad) // 2
            if probe(mid):
                good = mid
            else:
                bad = mid
    search.batch_size = good
    return search


def estimator_probe(
    model: ModelSource,
    input_shape: Sequence[int],
    budget_bytes: int,
    *,
    safety_margin: float = 0.1,
    peaks: dict[int, int] | None = None,
    **estimate_kwargs: Any,
) -> FitProbe:
    """A probe answering with the estimator: peak <= budget x (1 - safety_margin).

    `peaks`, when given, collects the estimated peak of every batch size probed.
    """
    if not 0 <= safety_margin < 1:
        raise ValueError(f"safety_margin must be in [0, 1), got {safety_margin}")
    if budget_bytes <= 0:
        raise ValueError(f"budget_bytes must be positive, got {budget_bytes}")
    module = materialise(model)
    allowed = budget_bytes * (1 - safety_margin)

    def fits(batch_size: int) -> bool:
        peak = estimate(module, input_shape, batch_size=batch_size, **estimate_kwargs).peak_bytes
        if peaks is not None:
            peaks[batch_size] = peak
        return peak <= allowed

    return fits


class CudaStepProbe:
    """Runs one forward/backward at each batch size on a CUDA device; OOM means "does not fit".

    Parameters, buffers, gradients and optimizer state are left exactly as they were: buffers
    (batch-norm statistics) are restored after each probe, gradients are set back, and the
    optimizer never steps. Memory the optimizer state will need is held as placeholders during
    the probe when the optimizer has no state yet.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        input_shape: Sequence[int],
        *,
        optimizer: str = "adamw",
        input_dtype: torch.dtype | None = None,
        loss_fn: LossFn | None = None,
        device: str = "cuda",
        safety_margin: float = 0.1,
    ) -> None:
        self.device = require_cuda(device)
        self.model = model
        self.input_shape = tuple(input_shape)
        self.states = OPTIMIZER_STATES.get(optimizer.lower(), 2)
        self.input_dtype = input_dtype or next(model.parameters()).dtype
        self.loss_fn = loss_fn or sum_loss
        total = torch.cuda.get_device_properties(self.device).total_memory
        self.allowed = total * (1 - safety_margin)
        self.peaks: dict[int, int] = {}

    def __call__(self, batch_size: int) -> bool:
        params = [p for p in self.model.parameters() if p.requires_grad]
        grads = [p.grad for p in params]
        buffers = [b.detach().to("cpu", copy=True) for b in self.model.buffers()]
        fits = True
        try:
            torch.cuda.reset_peak_memory_stats(self.device)
            placeholders = [torch.empty_like(p) for p in params for _ in range(self.states)]
            for p in params:
                p.grad = None
            inputs = make_inputs(batch_size, self.input_shape, self.input_dtype, self.device)
            loss = self.loss_fn(self.model(inputs))
            torch.autograd.backward(loss)
            torch.cuda.synchronize(self.device)
            self.peaks[batch_size] = torch.cuda.max_memory_allocated(self.device)
            fits = self.peaks[batch_size] <= self.allowed
            del placeholders, inputs, loss
        except torch.cuda.OutOfMemoryError:
            fits = False
        finally:
            for p, g in zip(params, grads, strict=True):
                p.grad = g
            with torch.no_grad():
                for b, saved in zip(self.model.buffers(), buffers, strict=True):
                    b.copy_(saved)
            # The OOM traceback holds frames with tensors: drop it before freeing the cache.
            gc.collect()
            torch.cuda.empty_cache()
        return fits


def find_max_batch_cuda(probe: CudaStepProbe, *, start: int = 1, limit: int = 65_536) -> BatchSearch:
    """find_max_batch with real steps; the peaks measured are kept in the result."""
    probe.model.train()
    search = find_max_batch(probe, start=start, limit=limit)
    search.peak_bytes = dict(probe.peaks)
    search.budget_bytes = int(probe.allowed)
    return search
