"""The thread that deletes pruned checkpoints belongs to its manager: started for work, gone after."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from gpu_optimizer.checkpoints import BackgroundDeleter, CheckpointManager


def deleting_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "ckpt-delete"]


def test_manager_owns_its_deleting_thread_and_close_stops_it(tmp_path: Path) -> None:
    model = torch.nn.Linear(4, 2)
    with CheckpointManager(tmp_path, "run", keep_last=1) as manager:
        for step in range(3):
            manager.save(step, model)
        manager.wait()
        assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["step-000000002"]
        assert deleting_threads() == []  # no idle thread once the queue is empty
    with pytest.raises(RuntimeError, match="closed"):
        manager.save(3, model)
    assert deleting_threads() == []


def test_close_finishes_queued_deletions_in_order(tmp_path: Path) -> None:
    release = threading.Event()
    started = threading.Event()
    deleted: list[str] = []

    def slow_delete(path: Path) -> None:
        started.set()
        release.wait(timeout=30)
        deleted.append(path.name)

    deleter = BackgroundDeleter(slow_delete)
    for name in ("a", "b", "c"):
        deleter.submit(tmp_path / name)
    assert started.wait(timeout=30)
    assert len(deleting_threads()) == 1
    assert deleter.pending == 3
    closer = threading.Thread(target=deleter.close)
    closer.start()
    release.set()
    closer.join(timeout=30)
    assert not closer.is_alive()
    assert deleted == ["a", "b", "c"]
    assert deleting_threads() == []
    with pytest.raises(RuntimeError):
        deleter.submit(tmp_path / "d")
