"""Recommendations with a predicted effect: each one re-runs the estimator with the change."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from gpu_optimizer.profiling.blocks import heaviest_repeated_blocks
from gpu_optimizer.profiling.estimator import ModelSource, estimate, materialise
from gpu_optimizer.profiling.options import StepOptions
from gpu_optimizer.profiling.report import MemoryReport, Recommendation

Estimate = Callable[..., MemoryReport]


def checkpoint_candidates(model: torch.nn.Module, report: MemoryReport) -> list[str]:
    """Names of the repeated blocks whose activations weigh most: what to checkpoint.

    Candidates are the non-container classes with children that occur at least twice (transformer
    blocks, residual bottlenecks, YOLO conv blocks); the class whose outermost instances hold the
    most bytes saved for backward wins. Returns [] when no class repeats.
    """
    own = {m.name: m.activations for m in report.modules}

    def subtree(name: str) -> int:
        prefix = f"{name}."
        return sum(v for n, v in own.items() if n == name or n.startswith(prefix))

    return heaviest_repeated_blocks(model, subtree)


def recommend(
    model: ModelSource,
    base: MemoryReport,
    *,
    budget_bytes: int | None = None,
    estimate_fn: Estimate = estimate,
    **estimate_kwargs: Any,
) -> list[Recommendation]:
    """Recommendations for the setup `base` was estimated with, sorted by bytes saved.

    `estimate_kwargs` are the arguments `base` came from (input_shape, dtype, optimizer, ...);
    `budget_bytes` lets gradient accumulation pick the largest micro-batch that fits.
    """
    module = materialise(model)
    dtype: torch.dtype = estimate_kwargs.get("dtype", torch.float32)
    out: list[Recommendation] = []

    def rerun(options: StepOptions, **changes: Any) -> MemoryReport:
        return estimate_fn(
            module, **(estimate_kwargs | {"batch_size": base.batch_size} | changes), options=options
        )

    def add(kind: Any, text: str, report: MemoryReport, **details: Any) -> None:
        saved = base.peak_bytes - report.peak_bytes
        if saved > 0:
            out.append(Recommendation(kind, text, report.peak_bytes, saved, details))

    if dtype == torch.float32:
        amp = rerun(StepOptions(autocast_dtype=torch.bfloat16))
        add(
            "mixed_precision",
            "train under torch.autocast with bfloat16 (float16 needs a GradScaler)",
            amp,
            autocast_dtype="bfloat16",
        )
    blocks = checkpoint_candidates(module, base)
    if blocks:
        ckpt = rerun(StepOptions(checkpoint_blocks=tuple(blocks)))
        add(
            "activation_checkpointing",
            f"wrap the {len(blocks)} {type(module.get_submodule(blocks[0])).__name__} blocks in "
            "torch.utils.checkpoint (use_reentrant=False)",
            ckpt,
            blocks=blocks,
        )
    if base.optimizer_state_bytes:
        off = rerun(StepOptions(optimizer_offload=True))
        add("optimizer_offload", "keep the optimizer state in host memory and step on the CPU", off)
    if base.batch_size >= 2:
        out.extend(_accumulation(base, budget_bytes, rerun))
    return sorted(out, key=lambda r: r.bytes_saved, reverse=True)


def _accumulation(
    base: MemoryReport, budget_bytes: int | None, rerun: Callable[..., MemoryReport]
) -> list[Recommendation]:
    micro = base.batch_size // 2
    report = rerun(StepOptions(accumulate_gradients=True), batch_size=micro)
    # With a budget, keep halving until the micro-batch fits (or reaches 1).
    while budget_bytes is not None and report.peak_bytes > budget_bytes and micro > 1:
        micro //= 2
        report = rerun(StepOptions(accumulate_gradients=True), batch_size=micro)
    steps = -(-base.batch_size // micro)
    saved = base.peak_bytes - report.peak_bytes
    if saved <= 0:
        return []
    return [
        Recommendation(
            "gradient_accumulation",
            f"micro-batch {micro} with {steps} accumulation steps "
            f"keeps the effective batch {base.batch_size}",
            report.peak_bytes,
            saved,
            {"micro_batch_size": micro, "accumulation_steps": steps},
        )
    ]


def with_recommendations(report: MemoryReport, recommendations: list[Recommendation]) -> MemoryReport:
    return replace(report, recommendations=recommendations)
