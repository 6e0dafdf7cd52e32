"""Estimator against the CUDA caching allocator on real architectures (skipped without CUDA)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from gpu_optimizer.profiling import (
    estimate,
    get_model_spec,
    measure_cuda,
    model_source,
    record_snapshot,
    sum_loss,
)

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
