"""Background checkpoint work yields the CPU to the training step.

An asynchronous save serialises, hashes and writes while the next steps run. On a box whose CPU
cores all feed the step (a CPU run, or data loading next to a GPU), the writer competes with the
step's threads, and an intra-op parallel region waits for its slowest thread. Lowering the
writer thread's scheduling priority (Linux: a thread is a task with its own nice value) lets the
step run first while the writer uses what is idle; the next save still waits for it.
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger("gpu_optimizer.checkpoints")

BACKGROUND_NICE = 10


def lower_current_thread_priority(increment: int = BACKGROUND_NICE) -> bool:
    """Raise the calling thread's nice value by `increment`; False where the OS does not allow it."""
    if not hasattr(os, "setpriority"):
        return False
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment))
    except OSError as exc:
        log.debug("could not lower the checkpoint writer's priority: %s", exc)
        return False
    return True
