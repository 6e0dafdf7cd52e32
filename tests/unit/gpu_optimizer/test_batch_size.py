"""Batch-size search: exact on monotone fit functions, and against a budget with the estimator."""

from __future__ import annotations

import pytest
import torch

from gpu_optimizer.profiling import (
    GPT,
    GPTConfig,
    NoBatchFitsError,
    estimate,
    estimator_probe,
    find_max_batch,
)


@pytest.mark.parametrize("largest", [1, 2, 3, 5, 8, 63, 64, 65, 100, 1000, 4095])
@pytest.mark.parametrize("start", [1, 3])
def test_finds_exactly_the_largest_fitting_batch(largest: int, start: int) -> None:
    start = min(start, largest)
    calls: list[int] = []

    def fits(b: int) -> bool:
        calls.append(b)
        return b <= largest

    search = find_max_batch(fits, start=start, limit=4096)
    assert search.batch_size == largest
    assert [b for b, _ in search.probes] == calls
    assert len(calls) <= 2 * (largest.bit_length() + 1)  # doubling then bisection: logarithmic


def test_limit_caps_the_search() -> None:
    search = find_max_batch(lambda b: True, limit=100)
    assert search.batch_size == 100
    assert search.probes[-1] == (100, True)


def test_nothing_fits_raises() -> None:
    with pytest.raises(NoBatchFitsError, match="batch size 1"):
        find_max_batch(lambda b: False)
    with pytest.raises(ValueError, match="start"):
        find_max_batch(lambda b: True, start=0)


def test_budget_mode_uses_the_estimator() -> None:
    model = GPT(GPTConfig(layers=1, d_model=32, heads=2, vocab=64, seq=16))
    kwargs = {"input_dtype": torch.long, "optimizer": "adamw"}
    target = 3
    budget = estimate(model, (16,), batch_size=target, **kwargs).peak_bytes
    peaks: dict[int, int] = {}
    fits = estimator_probe(model, (16,), budget, safety_margin=0.0, peaks=peaks, **kwargs)
    search = find_max_batch(fits, limit=64)
    assert search.batch_size == target
    assert peaks[target] <= budget < peaks[target + 1]
    # A safety margin lowers the answer.
    tighter = find_max_batch(estimator_probe(model, (16,), budget, safety_margin=0.1, **kwargs), limit=64)
    assert tighter.batch_size < target


def test_probe_rejects_bad_budget() -> None:
    model = torch.nn.Linear(4, 4)
    with pytest.raises(ValueError, match="budget"):
        estimator_probe(model, (4,), 0)
    with pytest.raises(ValueError, match="safety_margin"):
        estimator_probe(model, (4,), 1000, safety_margin=1.5)
