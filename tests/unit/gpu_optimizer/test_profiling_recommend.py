"""Recommendations re-run the estimator and predict what each change saves."""

from __future__ import annotations

import pytest
import torch

from gpu_optimizer.profiling import (
    GPT,
    GPTConfig,
    StepOptions,
    checkpoint_candidates,
    estimate,
    get_model_spec,
    recommend,
)


@pytest.fixture(scope="module")
def gpt() -> GPT:
    return GPT(GPTConfig(layers=2, d_model=64, heads=4, vocab=128, seq=32))


def test_recommendations_match_their_re_estimates(gpt: GPT) -> None:
    kwargs = {"input_shape": (32,), "input_dtype": torch.long, "optimizer": "adamw"}
    base = estimate(gpt, batch_size=4, **kwargs)
    recs = {r.kind: r for r in recommend(gpt, base, **kwargs)}
    assert set(recs) == {
        "mixed_precision",
        "activation_checkpointing",
        "optimizer_offload",
        "gradient_accumulation",
    }
    ckpt = recs["activation_checkpointing"]
    assert ckpt.details["blocks"] == ["blocks.0", "blocks.1"]
    again = estimate(
        gpt, batch_size=4, options=StepOptions(checkpoint_blocks=tuple(ckpt.details["blocks"])), **kwargs
    )
    assert ckpt.predicted_peak_bytes == again.peak_bytes
    assert ckpt.bytes_saved == base.peak_bytes - again.peak_bytes > 0
    accum = recs["gradient_accumulation"]
    assert accum.details == {"micro_batch_size": 2, "accumulation_steps": 2}
    assert all(r.predicted_peak_bytes < base.peak_bytes for r in recs.values())


def test_gradient_accumulation_fits_a_budget(gpt: GPT) -> None:
    kwargs = {"input_shape": (32,), "input_dtype": torch.long, "optimizer": "sgd"}
    base = estimate(gpt, batch_size=4, **kwargs)
    one = estimate(gpt, batch_size=1, **kwargs)
    recs = recommend(gpt, base, budget_bytes=one.peak_bytes + 1, **kwargs)
    accum = next(r for r in recs if r.kind == "gradient_accumulation")
    assert accum.details == {"micro_batch_size": 1, "accumulation_steps": 4}


def test_checkpoint_candidates_pick_residual_blocks() -> None:
    spec = get_model_spec("resnet18")
    model = spec.build()
    report = estimate(model, (3, 64, 64), batch_size=2, optimizer="sgd")
    blocks = checkpoint_candidates(model, report)
    assert blocks == [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
