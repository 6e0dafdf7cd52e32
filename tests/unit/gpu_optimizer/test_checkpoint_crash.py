"""Crash safety: SIGKILL a process at random points while it saves; what resumes always verifies."""

from __future__ import annotations

import os
import random
import select
import signal
import time
from pathlib import Path

import torch
from torch import nn

from gpu_optimizer.checkpoints import CheckpointManager

TRIALS = 60


def _trainer(seed: int) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8))
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(4, 64)).sum().backward()
    optimizer.step()
    return model, optimizer


def _save_forever(root: Path, first_step: int, report: int) -> None:
    """Child process body: save checkpoints back to back until killed.

    Writes b"r" to ``report`` when ready to save and b"s" after each completed save, so the
    parent's random kill points fall while saves run, however slow the machine is.
    """
    model, optimizer = _trainer(first_step)
    manager = CheckpointManager(root, "run", keep_last=2)
    os.write(report, b"r")
    step = first_step
    while True:
        manager.save(step, model, optimizer, metrics={"loss": 1.0 / (step + 1)})
        os.write(report, b"s")
        step += 1


def _wait_for(fd: int, wanted: bytes, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], deadline - time.monotonic())
        if ready and os.read(fd, 1) == wanted:
            return
    raise TimeoutError(f"child never reported {wanted!r}")


def test_sigkill_during_save_never_leaves_a_loadable_partial(tmp_path: Path) -> None:
    # Kill points spread over about four saves, so some land in every phase of one (fsync-bound).
    calibration = CheckpointManager(tmp_path / "calibrate", "run")
    trainer = _trainer(0)
    calibration.save(0, *trainer)
    start = time.perf_counter()
    calibration.save(1, *trainer)
    spread = min(4 * (time.perf_counter() - start), 0.5)
    rng = random.Random(1234)
    ever_completed = False
    next_step = 0
    for trial in range(TRIALS):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                os.close(read_end)
                _save_forever(tmp_path, next_step, write_end)
            finally:
                os._exit(1)
        os.close(write_end)
        try:
            _wait_for(read_end, b"r")
            if trial == 0:  # at least one checkpoint completes, so the later kills have one to protect
                _wait_for(read_end, b"s")
            time.sleep(rng.uniform(0.0, spread))
        finally:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            os.close(read_end)
        assert os.WIFSIGNALED(status), "the child must die by the signal, not exit on an error"

        manager = CheckpointManager(tmp_path, "run", keep_last=2)  # cleans stale temp dirs
        assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]
        model, optimizer = _trainer(10_000)
        info = manager.resume_latest(model, optimizer, restore_rng=False)
        if info is None:
            assert not ever_completed, "a completed checkpoint disappeared"
            continue
        ever_completed = True
        assert manager.verify(info).ok
        assert all(manager.verify(i).ok for i in manager.list())
        stored = manager.read_component(info, "model")
        for key, value in model.state_dict().items():
            assert torch.equal(stored[key], value)
        next_step = info.step + 1
    assert ever_completed, "no save ever completed: the kill points are too early"
