"""The estimator against real CPU training steps of real architectures."""

from __future__ import annotations

import gc
import json
from collections.abc import Callable
from typing import Any

import psutil
import pytest
import torch

from gpu_optimizer.profiling import (
    GPT,
    GPTConfig,
    StepOptions,
    estimate,
    get_model_spec,
    model_source,
    sum_loss,
)
from gpu_optimizer.profiling.estimator import EstimationError
from gpu_optimizer.profiling.measure import make_inputs
from gpu_optimizer.profiling.optimizers import build_optimizer


def real_cpu_step(
    build: Callable[[], torch.nn.Module],
    inputs: torch.Tensor,
    loss_fn: Callable[[Any], torch.Tensor],
    optimizer: str,
) -> dict[str, int]:
    """One real training step on CPU, counting what the estimator reports."""
    torch.manual_seed(0)
    model = build().train()
    own = {p.untyped_storage()._cdata for p in [*model.parameters(), *model.buffers()]}
    saved: dict[int, torch.UntypedStorage] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        # Keep the storage referenced so its address cannot be reused by a later tensor.
        saved.setdefault(t.untyped_storage()._cdata, t.untyped_storage())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn(model(inputs))
    loss.backward()
    opt = build_optimizer(optimizer, [p for p in model.parameters() if p.requires_grad])
    opt.step()
    state = [t for st in opt.state.values() for t in st.values() if isinstance(t, torch.Tensor)]
    return {
        "activation_bytes": sum(s.nbytes() for k, s in saved.items() if k not in own),
        "parameter_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
        "gradient_bytes": sum(
            p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None
        ),
        "optimizer_state_bytes": sum(t.numel() * t.element_size() for t in state),
        "parameter_count": sum(p.numel() for p in model.parameters()),
    }


# ResNet-50 runs at 128x128 instead of 224x224 and YOLO11n-pose at 256x256 to keep the real CPU
# step fast on a 2-core machine; the bytes saved scale with the area, the exactness does not.
CASES = [
    ("resnet50", (3, 128, 128), "adamw"),
    ("gpt-tiny", (64,), "adam"),
    ("yolo11n-pose", (3, 256, 256), "sgd_momentum"),
]


@pytest.mark.parametrize(("name", "shape", "optimizer"), CASES)
def test_estimate_equals_real_cpu_step(name: str, shape: tuple[int, ...], optimizer: str) -> None:
    spec = get_model_spec(name)
    loss_fn = spec.loss_fn or sum_loss
    report = estimate(
        model_source(spec),
        shape,
        batch_size=2,
        optimizer=optimizer,
        input_dtype=spec.input_dtype,
        loss_fn=loss_fn,
    )
    inputs = make_inputs(2, shape, spec.input_dtype or torch.float32, torch.device("cpu"))
    real = real_cpu_step(spec.build, inputs, loss_fn, optimizer)
    got = {k: getattr(report, k) for k in real}
    assert got == real
    assert report.activation_bytes > 0
    kinds = report.peak_breakdown
    assert sum(kinds.values()) == report.peak_bytes
    # Steady state: the second step's forward/backward already holds the optimizer state.
    assert kinds["parameters"] == report.parameter_bytes
    assert kinds["optimizer_state"] == report.optimizer_state_bytes
    assert report.peak_phase in ("forward", "backward", "optimizer")


@pytest.fixture(scope="module")
def tiny_gpt() -> GPT:
    return GPT(GPTConfig(layers=2, d_model=64, heads=4, vocab=128, seq=32))


def gpt_estimate(model: torch.nn.Module, **kwargs: Any) -> Any:
    return estimate(model, (32,), input_dtype=torch.long, **kwargs)


def test_estimate_leaves_the_model_untouched(tiny_gpt: GPT) -> None:
    before = {k: v.clone() for k, v in tiny_gpt.state_dict().items()}
    gpt_estimate(tiny_gpt, batch_size=2)
    after = tiny_gpt.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in tiny_gpt.parameters())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in tiny_gpt.modules())
    assert "forward" not in tiny_gpt.blocks[0].__dict__


def test_report_is_json_and_per_module_adds_up(tiny_gpt: GPT) -> None:
    report = gpt_estimate(tiny_gpt, batch_size=2)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["peak_bytes"] == report.peak_bytes
    assert sum(m.parameters for m in report.modules) == report.parameter_bytes
    assert sum(m.activations for m in report.modules) == report.activation_bytes
    top = {m.name: m for m in report.modules_by_depth(1)}
    assert top["blocks"].activations > top["ln_f"].activations > 0


def test_activations_grow_with_batch_and_states_with_optimizer(tiny_gpt: GPT) -> None:
    one = gpt_estimate(tiny_gpt, batch_size=1, optimizer="sgd")
    four = gpt_estimate(tiny_gpt, batch_size=4, optimizer="adamw")
    momentum = gpt_estimate(tiny_gpt, batch_size=1, optimizer="sgd_momentum")
    assert four.activation_bytes > 3 * one.activation_bytes
    assert one.optimizer_state_bytes == 0
    assert momentum.optimizer_state_bytes == one.parameter_bytes
    assert four.optimizer_state_bytes > 2 * one.parameter_bytes  # two moments plus step scalars


def test_options_change_the_estimate(tiny_gpt: GPT) -> None:
    base = gpt_estimate(tiny_gpt, batch_size=4)
    ckpt = gpt_estimate(
        tiny_gpt, batch_size=4, options=StepOptions(checkpoint_blocks=("blocks.0", "blocks.1"))
    )
    amp = gpt_estimate(tiny_gpt, batch_size=4, options=StepOptions(autocast_dtype=torch.bfloat16))
    offload = gpt_estimate(tiny_gpt, batch_size=4, options=StepOptions(optimizer_offload=True))
    assert ckpt.activation_bytes < base.activation_bytes
    assert amp.activation_bytes < base.activation_bytes
    assert offload.peak_bytes <= base.peak_bytes - base.optimizer_state_bytes
    assert offload.peak_breakdown["optimizer_state"] == 0


def test_bad_arguments_raise(tiny_gpt: GPT) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        gpt_estimate(tiny_gpt, batch_size=0)
    with pytest.raises(ValueError, match="device"):
        gpt_estimate(tiny_gpt, device="tpu")
    with pytest.raises(ValueError, match="floating"):
        gpt_estimate(tiny_gpt, dtype=torch.int32)
    with pytest.raises(ValueError, match="unknown optimizer"):
        gpt_estimate(tiny_gpt, optimizer="lion")
    with pytest.raises(EstimationError):
        # Sequence longer than the position table: the model itself refuses, the estimator says so.
        estimate(tiny_gpt, (3, 4, 5), input_dtype=torch.long)


def test_billion_parameter_estimate_allocates_nothing() -> None:
    cfg = GPTConfig(layers=8, d_model=3072, heads=24, seq=256)
    gc.collect()
    process = psutil.Process()
    rss_before = process.memory_info().rss
    report = estimate(lambda: GPT(cfg), (256,), batch_size=4, dtype=torch.bfloat16, input_dtype=torch.long)
    rss_growth = process.memory_info().rss - rss_before
    assert report.parameter_count == cfg.parameter_count > 1_000_000_000
    assert report.parameter_bytes == 2 * cfg.parameter_count
    assert report.peak_bytes > 4 * report.parameter_bytes  # params, grads, two AdamW moments
    assert rss_growth < 500 * 1024**2
