"""Deleting retired checkpoint trees off the training loop, in a thread owned by one object.

Retention removes a checkpoint at once (its manifest, then a rename to trash); deleting the files
is the slow part (on a disk mounted with discard, unlinking 1 GiB took 0.6 s, a fifth of a save),
so it happens here. The worker thread exists only while there is work, so an object nobody
closes leaves no idle thread behind; it is not a daemon, so the interpreter finishes the queue
before it exits. After ``os.fork`` the child has none of the parent's threads and may inherit a
held lock: the first call in a child starts from a fresh state (the parent deletes its own queue).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

from gpu_optimizer.checkpoints.atomic import delete_tree

log = logging.getLogger(__name__)


class BackgroundDeleter:
    """A queue of trees to delete, drained by one worker thread started on demand."""

    def __init__(self, delete: Callable[[Path], None] = delete_tree, name: str = "ckpt-delete") -> None:
        self._delete = delete
        self._name = name
        self._closed = False
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._queue: deque[Path] = deque()
        self._busy = False
        self._worker: threading.Thread | None = None

    def _in_this_process(self) -> None:
        # Read without the lock on purpose: in a forked child the inherited lock may be held by a
        # parent thread that does not exist here, and taking it would hang forever.
        if self._pid != os.getpid():
            self._reset()

    def submit(self, path: Path) -> None:
        """Queue ``path`` for deletion.

        Raises:
            RuntimeError: the deleter was closed.
        """
        self._in_this_process()
        with self._lock:
            if self._closed:
                raise RuntimeError("the checkpoint deleter was closed")
            self._queue.append(path)
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name=self._name, daemon=False)
                self._worker.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._worker = None
                    self._busy = False
                    self._drained.notify_all()
                    return
                path = self._queue.popleft()
                self._busy = True
            try:
                self._delete(path)
            except Exception:  # a tree left behind is removed by the next clean_stale
                log.exception("could not delete retired checkpoint %s", path.name)

    @property
    def pending(self) -> int:
        """Trees queued or being deleted right now."""
        self._in_this_process()
        with self._lock:
            return len(self._queue) + int(self._busy)

    def wait(self) -> None:
        """Block until every queued tree is deleted."""
        self._in_this_process()
        with self._lock:
            self._drained.wait_for(lambda: self._worker is None)

    def close(self) -> None:
        """Finish the queue, then refuse new work; closing twice is harmless."""
        self._in_this_process()
        with self._lock:
            self._closed = True
        self.wait()
