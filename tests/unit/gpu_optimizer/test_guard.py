"""The training guard on a real tiny training loop with injected NaN, huge gradients and OOMs."""

from __future__ import annotations

import copy
import json
import logging
import math

import pytest
import torch

from gpu_optimizer.guard import GuardAction, GuardConfig, TrainingAborted, TrainingGuard

DIGEST = "sha256:run-config-1234"


def make_problem(seed: int = 0) -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x = torch.randn(64, 8)
    y = x.sum(dim=1, keepdim=True) * 0.3
    return model, opt, x, y


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def train(
    guard: TrainingGuard, x: torch.Tensor, y: torch.Tensor, steps: int, poison: dict[int, str]
) -> list[float]:
    """Plain training loop; `poison[step]` injects a fault at that step."""
    losses = []
    for i in range(steps):
        with guard.step() as step:
            batch = x[: guard.batch_size]
            target = y[: guard.batch_size]
            fault = poison.get(i)
            if fault == "oom":
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            if fault == "nan_input":
                batch = batch.clone()
                batch[0, 0] = float("nan")
            loss = torch.nn.functional.mse_loss(guard.model(batch), target)
            if fault == "huge_grad":
                loss = loss * 1e12
            step.backward(loss)
            step.optimizer_step()
            losses.append(float(loss.detach()))
    return losses


def test_skip_step_on_nan_loss_keeps_weights_and_training_converges(caplog: pytest.LogCaptureFixture) -> None:
    model, opt, x, y = make_problem()
    guard = TrainingGuard(model, opt, GuardConfig(config_digest=DIGEST), batch_size=64)
    before = None

    with caplog.at_level(logging.WARNING, logger="gpu_optimizer.guard"):
        losses = train(guard, x, y, 3, {})
        before = snapshot(model)
        train(guard, x, y, 1, {0: "nan_input"})
        assert same(before, snapshot(model))
        assert all(p.grad is None for p in model.parameters())
        losses += train(guard, x, y, 30, {})
    assert losses[-1] < losses[0] / 2
    assert [e.kind for e in guard.events] == ["nonfinite_loss"]
    record = next(r for r in caplog.records if hasattr(r, "guard_event"))
    event = json.loads(json.dumps(record.guard_event))
    assert event["config_digest"] == DIGEST
    assert event["action"] == "skip_step"
    assert event["kind"] == "nonfinite_loss"
    assert event["step"] == 3


def test_exploding_gradient_is_skipped() -> None:
    model, opt, x, y = make_problem()
    guard = TrainingGuard(model, opt, GuardConfig(max_grad_norm=1e3), batch_size=64)
    train(guard, x, y, 2, {})
    before = snapshot(model)
    train(guard, x, y, 1, {0: "huge_grad"})
    assert same(before, snapshot(model))
    event = guard.events[-1]
    assert event.kind == "exploding_gradient"
    assert event.values["grad_norm"] is not None
    assert event.values["grad_norm"] > 1e3


@pytest.mark.parametrize("clip", [0.05, 1e6])
def test_clipping_with_the_checked_norm_matches_clip_grad_norm(clip: float) -> None:
    """One step clipped by the guard (with the norm it checked) against clip_grad_norm_ on a
    copy: the same coefficient up to float32 rounding of the norm; 1e6 clips nothing."""
    model, opt, x, y = make_problem()
    ref_model = copy.deepcopy(model)
    ref_opt = torch.optim.SGD(ref_model.parameters(), lr=0.05)
    guard = TrainingGuard(model, opt, GuardConfig(clip_grad_norm=clip), batch_size=64)
    train(guard, x, y, 1, {})
    torch.nn.functional.mse_loss(ref_model(x), y).backward()
    norm = float(torch.nn.utils.clip_grad_norm_(ref_model.parameters(), clip))
    ref_opt.step()

    assert guard.events == []
    assert (norm > clip) == (clip == 0.05)
    for p, q in zip(model.parameters(), ref_model.parameters(), strict=True):
        # lr x |g| x coefficient, the coefficients differing by a few float32 ulps at most.
        tol = 0.05 * float(q.grad.abs().max()) * 8 * torch.finfo(torch.float32).eps + 1e-12
        assert torch.allclose(p.detach(), q.detach(), rtol=0, atol=tol)


def test_repeated_ooms_reduce_the_batch_size() -> None:
    model, opt, x, y = make_problem()
    guard = TrainingGuard(model, opt, GuardConfig(max_consecutive_ooms=2), batch_size=64)
    train(guard, x, y, 4, {1: "oom", 2: "oom"})
    assert [(e.kind, e.action) for e in guard.events] == [
        ("oom", GuardAction.SKIP_STEP),
        ("oom", GuardAction.REDUCE_BATCH),
    ]
    assert guard.events[-1].new_batch_size == 32
    assert guard.batch_size == 32
    assert guard.consecutive_ooms == 0


def test_oom_at_minimum_batch_aborts() -> None:
    model, opt, x, y = make_problem()
    guard = TrainingGuard(model, opt, GuardConfig(max_consecutive_ooms=1, min_batch_size=64), batch_size=64)
    with pytest.raises(TrainingAborted, match="oom"):
        train(guard, x, y, 1, {0: "oom"})


def test_nonfinite_parameters_roll_back_to_the_last_checkpoint() -> None:
    model, opt, x, y = make_problem()
    checkpoint: dict[str, object] = {}

    def rollback() -> None:
        model.load_state_dict(checkpoint["model"])  # type: ignore[arg-type]
        opt.load_state_dict(checkpoint["optimizer"])  # type: ignore[arg-type]

    config = GuardConfig(max_grad_norm=float("inf"), on_nonfinite_parameter=GuardAction.ROLLBACK)
    guard = TrainingGuard(model, opt, config, batch_size=64, rollback=rollback)
    train(guard, x, y, 3, {})
    checkpoint.update(model=copy.deepcopy(model.state_dict()), optimizer=copy.deepcopy(opt.state_dict()))
    saved = snapshot(model)
    # A learning rate this large turns finite gradients into infinite weights.
    opt.param_groups[0]["lr"] = 1e38
    train(guard, x, y, 1, {0: "huge_grad"})
    opt.param_groups[0]["lr"] = 0.05
    assert guard.events[-1].kind == "nonfinite_parameter"
    assert guard.events[-1].action == GuardAction.ROLLBACK
    assert same(saved, snapshot(model))


def test_abort_raises_with_the_event() -> None:
    model, opt, x, y = make_problem()
    guard = TrainingGuard(model, opt, GuardConfig(on_nonfinite=GuardAction.ABORT, config_digest=DIGEST))
    with pytest.raises(TrainingAborted) as info:
        train(guard, x, y, 1, {0: "nan_input"})
    assert info.value.event.kind == "nonfinite_loss"
    assert info.value.event.config_digest == DIGEST


def test_rollback_without_callback_is_refused() -> None:
    model, opt, _, _ = make_problem()
    with pytest.raises(ValueError, match="rollback"):
        TrainingGuard(model, opt, GuardConfig(on_nonfinite=GuardAction.ROLLBACK))
    with pytest.raises(ValueError, match="max_grad_norm"):
        GuardConfig(max_grad_norm=0)


@pytest.mark.parametrize("exact", [False, True])
def test_total_norm_agrees_with_torch_and_sees_nan_and_inf(exact: bool) -> None:
    """The guard's short-way norm against torch's get_total_norm in float64, across dtype groups.

    The exact way sums float32 per-tensor norms in another order than torch: a few float32
    roundings (eps 1.2e-7) per term, so 1e-5 is generous. The fast way (BLAS dot products)
    accumulates the n squares of a float32 tensor in float32: at most n - 1 roundings of
    2**-24 each on a sum of positive terms, so n * 2**-24 over the largest tensor (2048).
    """
    from gpu_optimizer.guard import total_norm

    gen = torch.Generator().manual_seed(0)
    tensors = [torch.randn(s, generator=gen) for s in ((64, 32), (7,), (3, 3, 3))]
    tensors.append(torch.randn(50, generator=gen, dtype=torch.float64))
    expected = float(torch.nn.utils.get_total_norm([t.double() for t in tensors]))
    rel = 1e-5 if exact else 2048 * 2.0**-24
    assert total_norm(tensors, exact=exact) == pytest.approx(expected, rel=rel)
    assert total_norm([], exact=exact) == 0.0
    for bad in (float("nan"), float("inf"), float("-inf")):
        broken = [t.clone() for t in tensors]
        broken[1][3] = bad
        assert not math.isfinite(total_norm(broken, exact=exact))


def test_total_norm_of_finite_tensors_whose_squares_overflow_float32_is_finite() -> None:
    """Elements of 1e20 square past float32's 3.4e38: the fast way's sum is Inf, yet nothing is
    non-finite, so the norm is taken again with float64 squares."""
    from gpu_optimizer.guard import total_norm

    big = torch.full((1000,), 1e20)
    small = torch.ones(10)
    norm = total_norm([big, small])
    assert math.isfinite(norm)
    assert norm == pytest.approx(math.sqrt(1000) * 1e20, rel=1e-5)


def test_total_norm_takes_non_contiguous_and_half_tensors() -> None:
    """Tensors the dot products cannot take (a transposed view, bfloat16) still get the norm: the
    bfloat16 tensor's norm is rounded to bfloat16 (unit roundoff 2**-8), which bounds the error."""
    from gpu_optimizer.guard import total_norm

    gen = torch.Generator().manual_seed(1)
    a = torch.randn(16, 8, generator=gen).t()
    b = torch.randn(5, generator=gen).to(torch.bfloat16)
    expected = float(torch.nn.utils.get_total_norm([a.double(), b.double()]))
    assert total_norm([a, b]) == pytest.approx(expected, rel=2 * 2.0**-8)
    assert total_norm([a]) == pytest.approx(float(a.double().norm()), rel=1e-5)


def test_parameters_checked_every_k_steps_are_still_reported_at_the_next_nonfinite_loss() -> None:
    """With `param_check_every` > 1 a NaN weight that reaches the loss is named for what it is
    (the NaN loss it causes makes the guard look at the weights first), at the very next step."""
    model, opt, x, y = make_problem()
    restored: list[int] = []
    config = GuardConfig(param_check_every=100, on_nonfinite_parameter=GuardAction.ROLLBACK)
    guard = TrainingGuard(model, opt, config, batch_size=64, rollback=lambda: restored.append(1))
    train(guard, x, y, 3, {})
    assert guard.unchecked_steps == 3  # no pass over the weights yet
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")
    train(guard, x, y, 1, {})
    assert [(e.kind, e.step, e.action) for e in guard.events] == [
        ("nonfinite_parameter", 3, GuardAction.ROLLBACK)
    ]
    assert restored == [1]


def test_a_dormant_nonfinite_parameter_is_found_on_the_kth_step_or_when_verified() -> None:
    """A parameter that does not reach the loss cannot show in it: the periodic check (or an
    explicit `verify_parameters`, as before a checkpoint) finds it."""
    model, opt, x, y = make_problem()
    model.register_parameter("dormant", torch.nn.Parameter(torch.zeros(3)))
    guard = TrainingGuard(model, opt, GuardConfig(param_check_every=4), batch_size=64)
    train(guard, x, y, 1, {})
    with torch.no_grad():
        model.dormant[1] = float("inf")
    train(guard, x, y, 2, {})
    assert guard.events == []
    with pytest.raises(TrainingAborted, match="nonfinite_parameter"):
        train(guard, x, y, 1, {})  # the 4th optimizer step checks
    assert guard.events[-1].step == 3

    guard = TrainingGuard(model, opt, GuardConfig(param_check_every=4), batch_size=64)
    train(guard, x, y, 1, {})
    assert guard.events == []
    with pytest.raises(TrainingAborted, match="nonfinite_parameter"), guard.step() as step:
        step.verify_parameters()
