"""The estimate against the CPU allocator's own events (torch.profiler, profile_memory=True)
for one real steady-state training step of ResNet-50, a GPT-2-small-like model and YOLO11n-pose.

Both sides count the same bytes (tensor storages, plus the convolution kernels' internal scratch,
which the estimator measures per call on this CPU), so they agree to a few bytes where the peak
falls between operations; the 1% tolerance covers what other kernels allocate inside a call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from gpu_optimizer.profiling import GPT, GPTConfig, StepOptions, estimate, get_model_spec, sum_loss
from gpu_optimizer.profiling.gpt import next_token_loss
from gpu_optimizer.profiling.measure import make_inputs
from gpu_optimizer.profiling.measure_cpu import measure_cpu_step

# GPT-2 small's width, heads and vocabulary (the 50257-wide logits are what keep_output keeps),
# two layers and 64 tokens so that a real step takes seconds on two cores.
GPT2_LIKE = GPTConfig(layers=2, d_model=768, heads=12, vocab=50257, seq=64)


def _gpt() -> torch.nn.Module:
    return GPT(GPT2_LIKE)


MODELS: dict[str, tuple[Callable[[], torch.nn.Module], tuple[int, ...], torch.dtype | None, Any]] = {
    "resnet50": (get_model_spec("resnet50").build, (3, 64, 64), None, sum_loss),
    "gpt2-like": (_gpt, (64,), torch.long, next_token_loss),
    "yolo11n-pose": (get_model_spec("yolo11n-pose").build, (3, 256, 256), None, sum_loss),
}
SETUPS = {
    "fp32": StepOptions(),
    "foreach-adamw": StepOptions(optimizer_impl="foreach"),
    "output-kept": StepOptions(keep_output=True),
    "amp-bf16": StepOptions(autocast_dtype=torch.bfloat16),
}


@pytest.fixture(scope="module")
def built() -> dict[str, torch.nn.Module]:
    # ultralytics runs a forward in its constructor: build it once, as the estimator's source.
    return {"yolo11n-pose": get_model_spec("yolo11n-pose").build()}


# YOLO11n-pose with its outputs kept peaks inside a convolution's backward, where oneDNN's own
# scratch (1.5 MB here) is live: without kernel_scratch.py the estimate was 1.3% under.
CASES = [(n, s) for n in MODELS for s in SETUPS]


@pytest.mark.parametrize(("name", "setup"), CASES)
def test_estimate_within_one_percent_of_the_profiled_step(
    name: str, setup: str, built: dict[str, torch.nn.Module]
) -> None:
    build, shape, input_dtype, loss_fn = MODELS[name]
    options = SETUPS[setup]
    source = built.get(name, build)
    report = estimate(
        source,
        shape,
        batch_size=2,
        input_dtype=input_dtype,
        loss_fn=loss_fn,
        optimizer="adamw",
        options=options,
    )
    inputs = make_inputs(2, shape, input_dtype or torch.float32, torch.device("cpu"))
    measured = measure_cpu_step(build, inputs, optimizer="adamw", loss_fn=loss_fn, options=options)
    assert abs(report.peak_bytes - measured) <= 0.01 * measured, (report.peak_bytes, measured)


def test_the_setups_move_the_estimate_the_way_the_measurement_moves() -> None:
    """Foreach and kept logits raise the GPT peak: the estimate follows what was measured."""
    build, shape, input_dtype, loss_fn = MODELS["gpt2-like"]
    plain = estimate(build, shape, batch_size=2, input_dtype=input_dtype, loss_fn=loss_fn)
    kept = estimate(
        build, shape, batch_size=2, input_dtype=input_dtype, loss_fn=loss_fn, options=SETUPS["output-kept"]
    )
    logits = 2 * 64 * GPT2_LIKE.vocab * 4
    # The kept logits add at most their own size (less when the peak moves to another phase).
    assert 0 < kept.peak_bytes - plain.peak_bytes <= logits
