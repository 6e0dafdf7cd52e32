"""The async checkpoint writer runs at a lower CPU priority than the training thread, and only it."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import torch

from gpu_optimizer.checkpoints import CheckpointManager
from gpu_optimizer.checkpoints.priority import BACKGROUND_NICE, lower_current_thread_priority

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice values are Linux's")


def _nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_lowering_a_thread_leaves_the_process_and_other_threads_alone() -> None:
    before = _nice()
    seen: list[int] = []

    def worker() -> None:
        lower_current_thread_priority()
        seen.append(_nice())

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [min(19, before + BACKGROUND_NICE)]
    assert _nice() == before
    assert os.getpriority(os.PRIO_PROCESS, os.getpid()) == before


class _Recording(CheckpointManager):
    writer_nice: list[int]

    def _write(self, *args: Any, **kwargs: Any) -> Any:
        self.writer_nice.append(_nice())
        return super()._write(*args, **kwargs)


def test_save_async_writes_from_a_lowered_thread(tmp_path: Path) -> None:
    manager = _Recording(tmp_path, "run")
    manager.writer_nice = []
    model = torch.nn.Linear(4, 2)
    manager.save_async(1, model)
    manager.wait()
    assert manager.writer_nice == [min(19, _nice() + BACKGROUND_NICE)]
    assert [c.step for c in manager.list()] == [1]
