"""Pieces of the training kit: the data order, the config digest, the spike detector."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
import torch

from gpu_optimizer.guard import GuardAction
from gpu_optimizer.training import StepSampler, TrainConfig
from gpu_optimizer.training.spikes import SpikeDetector


def test_steps_of_an_epoch_partition_the_data_and_ranks_partition_each_step() -> None:
    ranks = [StepSampler(100, 20, seed=4, rank=r, world=2) for r in range(2)]
    assert ranks[0].steps_per_epoch == 5
    seen = []
    for step in range(5):
        parts = [s.indices(step) for s in ranks]
        assert [len(p) for p in parts] == [10, 10]
        seen += torch.cat(parts).tolist()
    assert sorted(seen) == list(range(100))  # one epoch: every sample once
    assert not torch.equal(ranks[0].indices(5), ranks[0].indices(0))  # epoch 1 is a new permutation


def test_a_fresh_sampler_reads_the_same_step_as_one_walked_there() -> None:
    walked = StepSampler(90, 16, seed=1)
    for step in range(13):
        walked.indices(step)
    fresh = StepSampler(90, 16, seed=1)
    assert torch.equal(fresh.indices(12), walked.indices(12))
    assert fresh.position(12).epoch == 2  # 5 steps per epoch
    assert fresh.position(12).offset == 2


def test_sampler_rejects_a_batch_the_world_cannot_split() -> None:
    with pytest.raises(ValueError, match="divisible"):
        StepSampler(100, 10, seed=0, rank=0, world=3)


def test_digest_follows_what_is_trained_not_where_it_is_written(tmp_path: Path) -> None:
    base = TrainConfig(run_name="r", max_steps=10, global_batch_size=8)
    moved = TrainConfig(
        run_name="r",
        max_steps=10,
        global_batch_size=8,
        log_path=tmp_path / "x.jsonl",
        service_url="http://elsewhere:8002",
    )
    assert base.digest == moved.digest
    assert TrainConfig(run_name="r", max_steps=10, global_batch_size=8, seed=1).digest != base.digest
    assert (
        "service_api_key"
        not in TrainConfig(run_name="r", max_steps=1, global_batch_size=1, service_api_key="secret").to_dict()
    )


def test_rollback_without_checkpoints_is_refused() -> None:
    with pytest.raises(ValueError, match="checkpoint_dir"):
        TrainConfig(run_name="r", max_steps=1, global_batch_size=1, on_loss_spike=GuardAction.ROLLBACK)


def test_spikes_are_relative_to_the_median_of_accepted_losses() -> None:
    spikes = SpikeDetector(factor=3.0, window=5, warmup=3)
    for loss in (1.0, 1.2):
        assert not spikes.is_spike(loss * 100)  # warm-up: nothing is a spike yet
        spikes.accept(loss)
    spikes.accept(0.9)
    assert spikes.is_spike(3.5)
    assert not spikes.is_spike(2.9)
    assert not spikes.is_spike(float("nan"))  # non-finite losses are the guard's business
    spikes.accept(float("inf"))
    assert spikes.state() == [1.0, 1.2, 0.9]


def test_the_running_median_is_the_median_of_the_window_through_evictions_and_loads() -> None:
    """The detector keeps its window sorted instead of sorting it per step: the same value as
    statistics.median of the window (the same middle element, or the same mean of two)."""
    gen = torch.Generator().manual_seed(5)
    values = (torch.rand(60, generator=gen) * 4).round(decimals=1).tolist()  # with repeats
    spikes = SpikeDetector(factor=3.0, window=7, warmup=3)
    for i, v in enumerate(values):
        spikes.accept(v)
        assert spikes.median() == statistics.median(values[max(0, i - 6) : i + 1])
    restored = SpikeDetector(factor=3.0, window=7, warmup=3)
    restored.load(spikes.state()[:4])
    assert restored.median() == statistics.median(spikes.state()[:4])


def test_actions_may_be_given_as_strings(tmp_path: Path) -> None:
    config = TrainConfig(
        run_name="r", max_steps=1, global_batch_size=1, checkpoint_dir=tmp_path, on_loss_spike="rollback"
    )
    assert config.on_loss_spike is GuardAction.ROLLBACK
    with pytest.raises(ValueError, match="explode"):
        TrainConfig(run_name="r", max_steps=1, global_batch_size=1, on_nonfinite="explode")


def test_reporter_to_a_service_that_is_down_neither_raises_nor_blocks() -> None:
    import socket

    from gpu_optimizer.training.reporting import RunReporter

    with socket.socket() as s:  # a port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    reporter = RunReporter(f"http://127.0.0.1:{port}", "down", timeout_s=0.5)
    reporter.report({"status": "running", "step": 1})
    reporter.close()
    assert reporter.sent == 0
    assert not reporter._thread.is_alive()
