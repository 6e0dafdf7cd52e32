"""How the process tells the running app that it was asked to stop (SIGTERM, SIGINT), and how the
app tells the process that it has drained."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable


class ShutdownNotice:
    """Tells the running app that the process was asked to stop, before the server closes its
    connections: ``__main__``'s server calls ``fire()`` from its SIGTERM/SIGINT handler, the
    lifespan subscribes to it (tests may fire it themselves).  A subscriber that drains (lets
    running work end) calls ``mark_drained`` when done; the server stops once ``drained`` is set.
    With no subscriber (the app not started yet, or already stopped) ``fire`` sets it at once.
    Thread-safe."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[[], None]] = []
        # Re-entrant: a signal handler may fire on the thread that is subscribing.
        self._lock = threading.RLock()
        self.drained = threading.Event()

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` on ``fire()``; returns the function that unsubscribes it."""
        with self._lock:
            self._callbacks.append(callback)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._callbacks.remove(callback)

        return unsubscribe

    def fire(self) -> None:
        with self._lock:
            callbacks = list(self._callbacks)
        if not callbacks:
            self.drained.set()
        for callback in callbacks:
            callback()

    def mark_drained(self) -> None:
        self.drained.set()
