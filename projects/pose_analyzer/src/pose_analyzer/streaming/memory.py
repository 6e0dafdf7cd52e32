"""Give freed heap memory back to the OS once a stream's detector is gone (glibc only).

A per-stream MediaPipe graph allocates tens of MB in many small blocks from worker threads;
glibc keeps freed blocks in its arenas, so without a trim the process stays at its peak after
the streams end (measured: 0.83 GB before 16 streams, 2.3 GB after, 2.6 GB after a second round).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)
_lock = threading.Lock()


def _load_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None
    return trim


_TRIM = _load_trim()


def release_free_memory() -> bool:
    """Return the heap's free pages to the OS; False where the C library cannot (blocking: call
    it from a worker thread)."""
    if _TRIM is None:
        return False
    with _lock:  # one trim at a time: it walks every arena
        _TRIM(0)
    return True
