"""Crash safety: SIGKILL a process at random points while it saves; what resumes always verifies."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from multiprocessing.connection import Connection
from pathlib import Path

import torch
from torch import nn

from gpu_optimizer.checkpoints import CheckpointManager

TRIALS = 60


def _trainer(seed: int) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8))
    optimizer = torch.optim.AdamW(model.parameters())
    # Gradients set directly: a first backward pass in a forked child costs seconds.
    for parameter in model.parameters():
        parameter.grad = torch.randn_like(parameter)
    optimizer.step()
    return model, optimizer


def _save_forever(root: Path, first_step: int, report: Connection) -> None:
    """Child process body: save checkpoints back to back until killed.

    Sends "ready" when ready to save and "saved" after each completed save, so the parent's
    random kill points fall while saves run, however slow the machine is.
    """
    torch.set_num_threads(1)
    model, optimizer = _trainer(first_step)
    manager = CheckpointManager(root, "run", keep_last=2)
    report.send("ready")
    step = first_step
    while True:
        manager.save(step, model, optimizer, metrics={"loss": 1.0 / (step + 1)})
        report.send("saved")
        step += 1


def _wait_for(conn: Connection, wanted: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if conn.poll(left) and conn.recv() == wanted:
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
    # Children fork from a clean, single-threaded server: forking this test process, whose
    # torch and checkpoint thread pools have run, can deadlock the child.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", "torch._dynamo", "gpu_optimizer.checkpoints"])
    for trial in range(TRIALS):
        receiver, sender = context.Pipe(duplex=False)
        child = context.Process(target=_save_forever, args=(tmp_path, next_step, sender))
        child.start()
        sender.close()
        try:
            _wait_for(receiver, "ready")
            if trial == 0:  # at least one checkpoint completes, so the later kills have one to protect
                _wait_for(receiver, "saved")
            time.sleep(rng.uniform(0.0, spread))
        finally:
            if child.pid is not None:
                os.kill(child.pid, signal.SIGKILL)
            child.join()
            receiver.close()
        assert child.exitcode == -signal.SIGKILL, "the child must die by the signal, not exit on an error"

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
