"""Training guard: wrap each training step to catch NaN/Inf, exploding gradients and OOM loops.

    guard = TrainingGuard(model, optimizer, GuardConfig(config_digest=digest), batch_size=32)
    for batch in loader:
        with guard.step() as step:
            loss = loss_fn(model(batch))
            step.backward(loss)          # checks the loss, then backward
            step.optimizer_step()        # checks gradients, steps, checks parameters
        batch_size = guard.batch_size    # lowered when the "reduce_batch" action fired

Every event is logged on the "gpu_optimizer.guard" logger with a JSON-serialisable
`extra={"guard_event": {...}}` (with the config digest) and answered by the configured action.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Literal

import torch

logger = logging.getLogger("gpu_optimizer.guard")

EventKind = Literal[
    "nonfinite_loss",
    "nonfinite_gradient",
    "exploding_gradient",
    "nonfinite_parameter",
    "oom",
    # Raised by the training kit (gpu_optimizer.training) and logged the same way.
    "loss_spike",
    "rollback_limit",
]


class GuardAction(StrEnum):
    SKIP_STEP = "skip_step"
    REDUCE_BATCH = "reduce_batch"
    ROLLBACK = "rollback"
    ABORT = "abort"


@dataclass(frozen=True)
class GuardConfig:
    """What to watch and how to answer. `config_digest` identifies the training run's config."""

    config_digest: str = ""
    on_nonfinite: GuardAction = GuardAction.SKIP_STEP
    on_exploding_gradient: GuardAction = GuardAction.SKIP_STEP
    # Weights already corrupted cannot be skipped: roll back (needs a callback) or stop.
    on_nonfinite_parameter: GuardAction = GuardAction.ABORT
    on_repeated_oom: GuardAction = GuardAction.REDUCE_BATCH
    max_grad_norm: float = 1e4
    # Gradients scaled to at most this 2-norm after the checks, with the norm the check took
    # (as clip_grad_norm_ would, without taking the norm a second time); None: not clipped.
    clip_grad_norm: float | None = None
    max_consecutive_ooms: int = 2
    min_batch_size: int = 1
    # Parameters are checked after every `param_check_every`-th optimizer step, whenever a loss or
    # gradient norm comes out non-finite (so NaN weights are reported as such, not as a NaN loss)
    # and on `GuardedStep.verify_parameters()` (the training kit calls it before every save).
    param_check_every: int = 1

    def __post_init__(self) -> None:
        if not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be positive, got {self.max_grad_norm}")
        if self.clip_grad_norm is not None and not self.clip_grad_norm > 0:
            raise ValueError(f"clip_grad_norm must be positive, got {self.clip_grad_norm}")
        if self.max_consecutive_ooms < 1 or self.min_batch_size < 1 or self.param_check_every < 1:
            raise ValueError("max_consecutive_ooms, min_batch_size and param_check_every must be >= 1")


@dataclass(frozen=True)
class GuardEvent:
    kind: EventKind
    step: int
    action: GuardAction
    detail: str
    config_digest: str
    batch_size: int
    new_batch_size: int | None = None
    values: dict[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["action"] = self.action.value
        return data


class TrainingAborted(RuntimeError):
    """Raised by the "abort" action; `event` says why."""

    def __init__(self, event: GuardEvent) -> None:
        super().__init__(f"training aborted at step {event.step}: {event.kind} ({event.detail})")
        self.event = event


class _StepRejected(Exception):
    """Leaves the guarded block once an event was answered (caught by `TrainingGuard.step`)."""


class GuardedStep:
    """Handle the training loop uses inside `with guard.step() as step`."""

    def __init__(self, guard: TrainingGuard) -> None:
        self._guard = guard
        self.skipped = False
        self.event: GuardEvent | None = None
        self.grad_norm: float | None = None

    def backward(self, loss: torch.Tensor) -> None:
        """Check that `loss` is finite, then run its backward."""
        value = float(loss.detach().float().sum())
        if not math.isfinite(value):
            self._guard._check_unverified_parameters()
            self._guard._answer(
                "nonfinite_loss",
                self._guard.config.on_nonfinite,
                f"loss is {value}",
                {"loss": _json_float(value)},
            )
        torch.autograd.backward(loss)

    def optimizer_step(self, grad_norm: float | None = None) -> None:
        """Check gradients (finite, norm under the limit), clip them if configured, step the
        optimizer, check parameters (after every `param_check_every`-th step). `grad_norm`: the
        gradients' total norm when the caller has just taken it (it is not taken again)."""
        guard = self._guard
        grads = [p.grad for p in guard.params if p.grad is not None]
        clip = guard.config.clip_grad_norm
        norm = total_norm(grads, exact=clip is not None) if grad_norm is None else grad_norm
        self.grad_norm = norm
        if not math.isfinite(norm):
            guard._check_unverified_parameters()
            guard._answer(
                "nonfinite_gradient",
                guard.config.on_nonfinite,
                f"gradient norm is {norm}",
                {"grad_norm": _json_float(norm)},
            )
        if norm > guard.config.max_grad_norm:
            guard._check_unverified_parameters()
            guard._answer(
                "exploding_gradient",
                guard.config.on_exploding_gradient,
                f"gradient norm {norm:.4g} > {guard.config.max_grad_norm:.4g}",
                {"grad_norm": norm},
            )
        if clip is not None and norm + _CLIP_EPS > clip:
            coef = clip / (norm + _CLIP_EPS)  # clip_grad_norm_'s coefficient
            with torch.no_grad():
                for g in grads:
                    g.mul_(coef)
        guard.optimizer.step()
        guard.unchecked_steps += 1
        if guard.unchecked_steps >= guard.config.param_check_every:
            guard._check_parameters()

    def verify_parameters(self) -> None:
        """Check the parameters unless no optimizer step changed them since they were last found
        finite (call it before saving a state a rollback may return to)."""
        self._guard._check_unverified_parameters()


class TrainingGuard:
    """Watches training steps of `model`/`optimizer` and answers problems (see GuardConfig).

    `rollback` restores the last checkpoint (e.g. a CheckpointManager load); it is required when
    any action is ROLLBACK. `batch_size` is the current batch size, lowered by REDUCE_BATCH.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        config: GuardConfig | None = None,
        *,
        batch_size: int = 1,
        rollback: Callable[[], None] | None = None,
    ) -> None:
        self.config = config or GuardConfig()
        actions = (
            self.config.on_nonfinite,
            self.config.on_exploding_gradient,
            self.config.on_nonfinite_parameter,
            self.config.on_repeated_oom,
        )
        if GuardAction.ROLLBACK in actions and rollback is None:
            raise ValueError("a rollback action is configured but no rollback callback was given")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.optimizer = optimizer
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.batch_size = batch_size
        self.rollback = rollback
        self.step_index = 0
        self.consecutive_ooms = 0
        # Optimizer steps since the parameters were last found finite; whoever restores checked
        # parameters (a rollback, a resume) sets it back to 0.
        self.unchecked_steps = 0
        self.events: list[GuardEvent] = []
        self._current: GuardedStep | None = None

    @contextmanager
    def step(self) -> Iterator[GuardedStep]:
        """Guard one training step. Raises TrainingAborted when the action is ABORT."""
        handle = GuardedStep(self)
        self._current = handle
        try:
            yield handle
        except _StepRejected:
            pass
        except torch.OutOfMemoryError as exc:
            self._on_oom(exc)
        else:
            self.consecutive_ooms = 0
        finally:
            self._current = None
            self.step_index += 1

    def _check_parameters(self) -> None:
        """One fused pass over the parameters; answers "nonfinite_parameter" when any is NaN/Inf."""
        bad = _nonfinite_tensors(self.params)
        if not bad:
            self.unchecked_steps = 0
            return
        self._answer(
            "nonfinite_parameter",
            self.config.on_nonfinite_parameter,
            f"{len(bad)} parameter tensors hold NaN/Inf after the step",
            {},
        )

    def _check_unverified_parameters(self) -> None:
        if self.unchecked_steps:
            self._check_parameters()

    def _on_oom(self, exc: BaseException) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self.consecutive_ooms += 1
        action = (
            self.config.on_repeated_oom
            if self.consecutive_ooms >= self.config.max_consecutive_ooms
            else GuardAction.SKIP_STEP
        )
        with suppress(_StepRejected):
            self._answer(
                "oom",
                action,
                f"out of memory ({self.consecutive_ooms} in a row): {exc}",
                {"consecutive_ooms": float(self.consecutive_ooms)},
            )

    def _answer(
        self, kind: EventKind, action: GuardAction, detail: str, values: dict[str, float | None]
    ) -> None:
        """Log the event, apply `action` and leave the step (raises _StepRejected or TrainingAborted)."""
        new_batch = None
        if action is GuardAction.REDUCE_BATCH:
            new_batch = max(self.config.min_batch_size, self.batch_size // 2)
            if new_batch == self.batch_size:
                action = GuardAction.ABORT
                detail += f"; batch size already at the minimum {self.batch_size}"
        event = GuardEvent(
            kind,
            self.step_index,
            action,
            detail,
            self.config.config_digest,
            self.batch_size,
            new_batch,
            values,
        )
        self.events.append(event)
        if self._current is not None:
            self._current.skipped = True
            self._current.event = event
        logger.warning(
            "training guard: %s at step %d -> %s",
            kind,
            self.step_index,
            action.value,
            extra={"guard_event": event.to_dict()},
        )
        if action is GuardAction.ABORT:
            raise TrainingAborted(event)
        self.optimizer.zero_grad(set_to_none=True)
        if action is GuardAction.REDUCE_BATCH and new_batch is not None:
            self.batch_size = new_batch
            self.consecutive_ooms = 0
        elif action is GuardAction.ROLLBACK and self.rollback is not None:
            self.rollback()
        raise _StepRejected


_CLIP_EPS = 1e-6
_DOT_DTYPES = (torch.float32, torch.float64)  # total_norm's dot products: BLAS sdot/ddot


def total_norm(tensors: Sequence[torch.Tensor], *, exact: bool = False) -> float:
    """The 2-norm of all `tensors` together (NaN/Inf when any element is).

    The guard takes it every step, right after backward, when the gradients have left the cache:
    the pass is a memory read, and the cheapest read is the one BLAS does. Contiguous float32/64
    CPU tensors take one `torch.dot(t, t)` each (about 30 % faster, right after backward, than the
    fused per-tensor norm, which accumulates float32 in float64 on CPU). Its float32 sum
    carries a relative error of at most n ulps for n elements, invisible to the thresholds the
    guard compares it with; `exact=True` (the clipping coefficient) and any other tensor take one
    fused per-tensor norm per (device, dtype) group and one norm of those. A sum of squares that
    overflows float32 (elements near 1e19) is taken again in float64, so a finite gradient is
    never called non-finite there. Tensor subclasses (FSDP2's DTensor) go through `get_total_norm`,
    which knows how to reduce them.
    """
    if not tensors:
        return 0.0
    if any(type(t) is not torch.Tensor and type(t) is not torch.nn.Parameter for t in tensors):
        with torch.no_grad():
            return float(torch.nn.utils.get_total_norm([t.detach() for t in tensors]))
    with torch.no_grad():
        if not exact and all(
            t.device.type == "cpu" and t.dtype in _DOT_DTYPES and t.is_contiguous() for t in tensors
        ):
            squares = 0.0
            for t in tensors:
                flat = t.view(-1)
                squares += float(torch.dot(flat, flat))
            if math.isfinite(squares):
                return math.sqrt(squares)
            if any(not bool(torch.isfinite(t).all()) for t in tensors):
                return squares
            # Finite elements whose float32 squares overflow: the squares in float64.
            wide = (float(torch.linalg.vector_norm(t, dtype=torch.float64)) for t in tensors)
            return math.sqrt(sum(part * part for part in wide))
        groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
        for t in tensors:
            groups.setdefault((t.device, t.dtype), []).append(t)
        squares = 0.0
        for group in groups.values():
            part = float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(group))))
            squares += part * part
    return math.sqrt(squares)


def _nonfinite_tensors(params: Sequence[torch.Tensor]) -> list[int]:
    """Indices of the tensors holding NaN/Inf.

    One fused norm over all tensors answers the common case with a single device sync; only
    when it is not finite (a NaN/Inf, or squares too large to sum) is each tensor looked at.
    """
    if not params:
        return []
    if math.isfinite(total_norm(params)):
        return []
    return [i for i, p in enumerate(params) if not bool(torch.isfinite(p.detach()).all())]


def _json_float(value: float) -> float | None:
    """NaN and Inf are not JSON: log them as null (the detail string keeps the value)."""
    return value if math.isfinite(value) else None
