"""Estimator against the CUDA caching allocator on real architectures (skipped without CUDA)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from gpu_optimizer.profiling import (
    StepOptions,
    estimate,
    get_model_spec,
    measure_cuda,
    model_source,
    record_snapshot,
    sum_loss,
)
from gpu_optimizer.profiling.allocator import round_size, segment_size
from gpu_optimizer.profiling.gpus import MIB
from gpu_optimizer.profiling.measure import measure_cuda_step

CASES = [
    ("resnet50", (3, 224, 224), 8),
    ("gpt2", (512,), 4),
    ("yolo11n-pose", (3, 640, 640), 4),
]


@pytest.mark.parametrize(("name", "shape", "batch"), CASES)
def test_estimate_within_ten_percent_of_max_memory_allocated(
    name: str, shape: tuple[int, ...], batch: int
) -> None:
    spec = get_model_spec(name)
    kwargs = {"input_dtype": spec.input_dtype, "loss_fn": spec.loss_fn or sum_loss, "optimizer": "adamw"}
    measured = measure_cuda(spec.build, shape, batch_size=batch, name=name, **kwargs)
    estimated = estimate(model_source(spec), shape, batch_size=batch, device="cuda", **kwargs)
    print(f"{name}: estimate {estimated.peak_bytes} measured {measured.peak_bytes}")  # for the report
    assert estimated.parameter_bytes == measured.parameter_bytes
    assert estimated.gradient_bytes == measured.gradient_bytes
    # CUDA keeps Adam's scalar step counters on the host; the estimate counts them.
    assert (
        0
        <= estimated.optimizer_state_bytes - measured.optimizer_state_bytes
        <= 4 * len(list(spec.build().parameters()))
    )
    assert abs(estimated.peak_bytes - measured.peak_bytes) <= 0.10 * measured.peak_bytes


@pytest.mark.parametrize("amp", [None, torch.bfloat16], ids=["fp32", "amp-bf16"])
@pytest.mark.parametrize(("name", "shape", "batch"), CASES)
def test_allocated_within_5_and_reserved_within_10_percent(
    name: str, shape: tuple[int, ...], batch: int, amp: torch.dtype | None
) -> None:
    """The GPU-faithful estimate (foreach AdamW, allocator model, cuBLAS workspace) against
    max_memory_allocated / max_memory_reserved of two real steps from an emptied cache."""
    spec = get_model_spec(name)
    kwargs = {"input_dtype": spec.input_dtype, "loss_fn": spec.loss_fn or sum_loss}
    measured = measure_cuda_step(spec.build, shape, batch_size=batch, autocast_dtype=amp, **kwargs)
    est = estimate(
        model_source(spec),
        shape,
        batch_size=batch,
        device="cuda",
        options=StepOptions(autocast_dtype=amp),
        **kwargs,
    )
    major, _ = torch.cuda.get_device_capability()
    cublas = round_size(int((32 if major >= 9 else 8.125) * MIB))
    assert est.allocated_peak_bytes is not None
    assert est.reserved_peak_bytes is not None
    allocated = est.allocated_peak_bytes + cublas
    reserved = est.reserved_peak_bytes + segment_size(cublas)
    print(f"{name} {amp}: allocated {allocated} vs {measured}, reserved {reserved}")  # for the report
    assert abs(allocated - measured["allocated_peak_bytes"]) <= 0.05 * measured["allocated_peak_bytes"]
    assert abs(reserved - measured["reserved_peak_bytes"]) <= 0.10 * measured["reserved_peak_bytes"]


def test_snapshot_is_written_for_memory_viz(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.pickle"
    with record_snapshot(path):
        x = torch.randn(1024, 1024, device="cuda")
        y = x @ x
        del x, y
    with path.open("rb") as fh:
        snapshot = pickle.load(fh)
    assert "segments" in snapshot
    assert any(trace for trace in snapshot["device_traces"])
