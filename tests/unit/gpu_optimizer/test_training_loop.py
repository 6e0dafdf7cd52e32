"""The training kit's loop on CPU: exact resume, OOM recovery, guard actions and rollback."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from gpu_optimizer.checkpoints import CheckpointManager
from gpu_optimizer.guard import GuardAction, TrainingAborted
from gpu_optimizer.training import SimulatedDeviceLimit, StepSampler, Trainer, read_log
from gpu_optimizer.training.data import fetch
from gpu_optimizer.training.memory import choose_micro_batch
from tests.unit.gpu_optimizer.training_helpers import (
    CLASSES,
    FEATURES,
    adam,
    ce_loss,
    config,
    make_data,
    make_model,
    params_of,
    warmup,
)

EPS32 = torch.finfo(torch.float32).eps


def sgd(params: Any) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.1)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_a_stopped_run_resumes_exactly_where_it_stopped(tmp_path: Path, precision: str) -> None:
    """fp16 adds the grad scaler (its scale and growth tracker) to what must come back."""
    ref = Trainer(
        config(tmp_path / "a", checkpoint_every_steps=5, precision=precision),
        make_model(),
        adam,
        make_data(),
        ce_loss,
        scheduler_factory=warmup,
    )
    full = ref.fit()
    first = Trainer(
        config(tmp_path / "b", checkpoint_every_steps=5, max_steps=13, precision=precision),
        make_model(),
        adam,
        make_data(),
        ce_loss,
        scheduler_factory=warmup,
    )
    first.fit()
    # A fresh process would build the model from another seed: resume must not depend on it.
    second = Trainer(
        config(tmp_path / "b", checkpoint_every_steps=5, precision=precision),
        make_model(seed=99),
        adam,
        make_data(),
        ce_loss,
        scheduler_factory=warmup,
    )
    rest = second.fit()

    assert rest.resumed_from == 13
    # Same ops, same order, same inputs and restored RNG (dropout): identical, not merely close.
    assert all(torch.equal(p, q) for p, q in zip(params_of(ref.model), params_of(second.model), strict=True))
    assert {s: full.losses[s] for s in range(13, 24)} == rest.losses
    assert second.scheduler is not None
    assert second.scheduler.last_epoch == 24
    if precision == "fp16":
        assert ref.scaler is not None
        assert second.scaler is not None
        assert second.scaler.state_dict() == ref.scaler.state_dict()


def test_the_kit_steps_exactly_as_a_hand_written_loop() -> None:
    """Same model, data order, optimizer and scheduler: the guard, the spike check and where the
    kit drops the last step's gradients change nothing a step computes. The same ops in the same
    order give equal parameters, not merely close ones; a step that kept the previous step's
    gradients, or dropped the current ones, would not."""

    def model() -> torch.nn.Module:
        torch.manual_seed(0)
        layers = [torch.nn.Linear(FEATURES, 16), torch.nn.ReLU(), torch.nn.Linear(16, CLASSES)]
        return torch.nn.Sequential(*layers)

    data = make_data()
    cfg = config(None, micro_batch_size=16)
    kit = Trainer(cfg, model(), adam, data, ce_loss, scheduler_factory=warmup)
    result = kit.fit()
    plain = model()
    opt = adam(plain.parameters())
    sched = warmup(opt)
    sampler = StepSampler(len(data), cfg.global_batch_size, seed=cfg.seed)
    for step in range(cfg.max_steps):
        loss = ce_loss(plain, fetch(data, sampler.indices(step)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()

    assert result.steps == cfg.max_steps
    assert result.skipped == 0
    assert all(torch.equal(p, q) for p, q in zip(params_of(kit.model), params_of(plain), strict=True))


def test_time_based_checkpoints_are_written_and_pruned(tmp_path: Path) -> None:
    cfg = config(tmp_path, checkpoint_every_s=1e-9, keep_last=2, max_steps=6)
    Trainer(cfg, make_model(), adam, make_data(), ce_loss).fit()
    kept = CheckpointManager(tmp_path / "ckpt", "tiny").list()
    assert [i.step for i in kept] == [5, 6]
    saved = [e["step"] for e in read_log(tmp_path / "run.jsonl") if e["event"] == "checkpoint"]
    assert saved == [0, 1, 2, 3, 4, 5, 6]
    assert all(i.config_digest == cfg.digest for i in kept)


def test_oom_halves_the_micro_batch_and_keeps_the_effective_batch(tmp_path: Path) -> None:
    model = make_model()
    limit = SimulatedDeviceLimit.from_estimator(1, model, (8,), optimizer="sgd")
    full, half = limit.peak(16), limit.peak(8)
    assert half < full
    limit.limit_bytes = (full + half) // 2  # the device holds a micro-batch of 8, not 16
    # The estimator, told there is plenty of memory, picks the whole per-rank batch of 16.
    budget = int(full / 0.9) + 1024
    assert choose_micro_batch(model, (8,), 16, budget, safety_margin=0.1, optimizer="sgd") == 16

    run = Trainer(
        config(tmp_path / "oom", memory_budget_bytes=budget),
        model,
        sgd,
        make_data(),
        ce_loss,
        memory_limit=limit,
    )
    assert run.micro_batch == 16
    result = run.fit()
    plain = Trainer(config(None, micro_batch_size=16), make_model(), sgd, make_data(), ce_loss).fit()

    assert result.steps == plain.steps == 24
    assert result.micro_batch == 8
    assert result.ooms == 1
    assert limit.raised == 1
    # Each step's loss is the mean of the same 16 samples, summed as two halves: it differs only
    # by float32 rounding, which SGD passes on linearly; 64 ulps per step over 24 steps bounds it.
    rtol = 64 * EPS32 * 24
    for step, loss in plain.losses.items():
        assert math.isclose(result.losses[step], loss, rel_tol=rtol), step
    events = read_log(tmp_path / "oom" / "run.jsonl")
    oom = [e for e in events if e["event"] == "oom"]
    assert oom == [pytest.approx(oom[0])]
    assert oom[0]["micro_batch"] == 8
    assert oom[0]["accumulation"] == 2
    guard = [e for e in events if e["event"] == "guard"]
    assert guard[0]["kind"] == "oom"
    assert guard[0]["action"] == "reduce_batch"
    assert {e["config_digest"] for e in events} == {run.config.digest}


def test_injected_spike_is_skipped_and_nan_rolls_back_with_a_lower_lr(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        checkpoint_every_steps=5,
        on_loss_spike=GuardAction.SKIP_STEP,
        on_nonfinite=GuardAction.ROLLBACK,
        spike_factor=4.0,
        keep_last=10,
    )
    trainer: Trainer | None = None
    fired: set[str] = set()
    seen: dict[str, Any] = {}

    def loss_fn(model: torch.nn.Module, batch: Any) -> torch.Tensor:
        assert trainer is not None
        loss = ce_loss(model, batch)
        step = trainer.step
        if step == 8 and "spike" not in fired:
            fired.add("spike")
            seen["before_spike"] = params_of(model)
            return loss * 50
        if step == 9 and "after_spike" not in seen:
            seen["after_spike"] = params_of(model)
        if step == 10:
            key = "at_10_again" if "nan" in fired else "at_10"
            seen.setdefault(key, (params_of(model), trainer.optimizer.param_groups[0]["lr"]))
        if step == 13 and "nan" not in fired:
            fired.add("nan")
            return loss * float("nan")
        return loss

    trainer = Trainer(cfg, make_model(), adam, make_data(), loss_fn, scheduler_factory=warmup)
    result = trainer.fit()

    assert result.steps == 24
    assert result.rollbacks == 1
    assert result.skipped == 1
    # The spiking step changed nothing.
    assert all(torch.equal(p, q) for p, q in zip(seen["before_spike"], seen["after_spike"], strict=True))
    # The rollback restored the checkpoint of step 10 and halved the learning rate.
    params_10, lr_10 = seen["at_10"]
    params_again, lr_again = seen["at_10_again"]
    assert all(torch.equal(p, q) for p, q in zip(params_10, params_again, strict=True))
    assert lr_again == pytest.approx(lr_10 * cfg.rollback_lr_factor, rel=4 * EPS32)
    stored = CheckpointManager(tmp_path / "ckpt", "tiny").read_component("step-000000010", "model")
    names = list(make_model().state_dict())
    assert all(torch.equal(p, stored[n]) for p, n in zip(params_10, names, strict=True))

    events = read_log(tmp_path / "run.jsonl")
    guard = [(e["kind"], e["step"], e["action"], e["config_digest"]) for e in events if e["event"] == "guard"]
    assert guard == [
        ("loss_spike", 8, "skip_step", cfg.digest),
        ("nonfinite_loss", 13, "rollback", cfg.digest),
    ]
    rollback = next(e for e in events if e["event"] == "rollback")
    assert (rollback["from_step"], rollback["to_step"], rollback["lr_scale"]) == (13, 10, 0.5)


def test_abort_action_stops_the_run_with_the_event(tmp_path: Path) -> None:
    def nan_at_3(model: torch.nn.Module, batch: Any) -> torch.Tensor:
        loss = ce_loss(model, batch)
        return loss * float("nan") if trainer.step == 3 else loss

    cfg = config(tmp_path, on_nonfinite=GuardAction.ABORT)
    trainer = Trainer(cfg, make_model(), adam, make_data(), nan_at_3)
    with pytest.raises(TrainingAborted) as caught:
        trainer.fit()
    assert caught.value.event.step == 3
    assert caught.value.event.config_digest == cfg.digest
    assert read_log(tmp_path / "run.jsonl")[-1]["event"] == "aborted"


def test_bf16_autocast_and_clipping_train_on_cpu() -> None:
    result = Trainer(
        config(None, precision="bf16", grad_clip_norm=0.5, max_steps=30),
        make_model(),
        adam,
        make_data(),
        ce_loss,
    ).fit()
    losses = list(result.losses.values())
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) < sum(losses[:5])


def test_a_skipped_nan_step_leaves_no_nan_in_checkpoint_metrics(tmp_path: Path) -> None:
    def nan_at_2(model: torch.nn.Module, batch: Any) -> torch.Tensor:
        loss = ce_loss(model, batch)
        return loss * float("nan") if trainer.step == 2 else loss

    cfg = config(tmp_path, checkpoint_every_steps=1, keep_last=10, max_steps=4)
    trainer = Trainer(cfg, make_model(), adam, make_data(), nan_at_2)
    result = trainer.fit()
    assert result.skipped == 1
    infos = CheckpointManager(tmp_path / "ckpt", "tiny").list()
    assert [i.step for i in infos] == [0, 1, 2, 3, 4]
    assert infos[3].metrics == {}  # the step that ended at 3 had a NaN loss
    assert all(math.isfinite(v) for i in infos for v in i.metrics.values())


def test_steps_yields_every_step_and_a_run_closed_early_resumes_from_its_last_checkpoint(
    tmp_path: Path,
) -> None:
    cfg = config(tmp_path, checkpoint_every_steps=5)
    trainer = Trainer(cfg, make_model(), adam, make_data(), ce_loss)
    steps = trainer.steps()
    seen = [next(steps) for _ in range(7)]
    steps.close()

    assert seen == list(range(1, 8))
    assert trainer.result.steps == 7
    assert sorted(trainer.result.losses) == list(range(7))
    events = [e["event"] for e in read_log(tmp_path / "run.jsonl")]
    assert "finished" not in events
    assert events.count("checkpoint") == 2  # step 0 and step 5; no final save when closed early
    rest = Trainer(cfg, make_model(seed=99), adam, make_data(), ce_loss).fit()
    assert rest.resumed_from == 5
    assert rest.steps == cfg.max_steps


def test_a_nonfinite_parameter_is_caught_before_the_checkpoint_and_never_saved(tmp_path: Path) -> None:
    """Parameters checked only every 100 steps: a NaN in one the loss never sees (so no NaN loss
    reveals it) is still found by the check before the save of step 10 and rolled back to step 5."""
    cfg = config(
        tmp_path,
        checkpoint_every_steps=5,
        param_check_every_steps=100,
        on_nonfinite_parameter=GuardAction.ROLLBACK,
        keep_last=10,
    )
    model = make_model()
    model.register_parameter("dormant", torch.nn.Parameter(torch.zeros(2)))
    poisoned: list[int] = []

    def loss_fn(m: torch.nn.Module, batch: Any) -> torch.Tensor:
        if trainer.step == 7 and not poisoned:
            poisoned.append(7)
            with torch.no_grad():
                model.dormant[0] = float("nan")
        return ce_loss(m, batch)

    trainer = Trainer(cfg, model, adam, make_data(), loss_fn)
    result = trainer.fit()

    assert result.steps == 24
    assert result.rollbacks == 1
    events = read_log(tmp_path / "run.jsonl")
    guard = [(e["kind"], e["step"], e["action"]) for e in events if e["event"] == "guard"]
    assert guard == [("nonfinite_parameter", 9, "rollback")]
    rollback = next(e for e in events if e["event"] == "rollback")
    assert (rollback["from_step"], rollback["to_step"]) == (9, 5)
    manager = CheckpointManager(tmp_path / "ckpt", "tiny")
    assert [i.step for i in manager.list()] == [0, 5, 10, 15, 20, 24]
    for info in manager.list():
        stored = manager.read_component(info, "model")
        assert all(bool(torch.isfinite(t).all()) for t in stored.values()), info.name
    assert bool(torch.isfinite(model.dormant).all())
