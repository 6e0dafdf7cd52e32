"""Keep the heap from holding what ended streams freed (glibc only; elsewhere these do nothing).

What held it (measured with 16 MediaPipe graphs set up at once from worker threads, a few frames
each, closed, rounds repeated in one process): glibc's *dynamic* mmap threshold.  The first large
block a graph frees (model buffers, tensors) raises the threshold from 128 KiB up to 32 MiB, so
the next graphs' multi-MB buffers are carved from the per-thread arenas (up to 8 per core)
instead of getting mappings of their own; once freed there they stay resident, pinned by small
live blocks around them.  Measured growth after each round (malloc_trim after each): 248, 292,
260, 351 MB with glibc's defaults; 3, 3, 4 MB with ``tune_allocator``'s fixed threshold and two
arenas.  ``release_free_memory`` then returns the small blocks' free pages once a stream's
detector is gone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading
from typing import Any

log = logging.getLogger(__name__)
_lock = threading.Lock()

# mallopt parameters (malloc.h).
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
# Blocks from this size up get their own mapping, returned to the OS when freed; setting it
# also turns the dynamic threshold off.  128 KiB is glibc's own starting value.
MMAP_THRESHOLD_BYTES = 128 * 1024
# Heaps the threads allocate from: detection and analysis run on a few worker threads (two
# cores' worth), so more arenas add fragmentation, not speed.
ARENA_MAX = 2


def _load_libc() -> Any | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim  # noqa: B018 - glibc only: musl and macOS have no malloc_trim
        libc.mallopt  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _load_libc()


def tune_allocator() -> dict[str, int]:
    """Fix glibc's mmap threshold and cap its arenas (see the module doc); returns what it set.

    Call it first thing in the process, before any thread starts (arenas are assigned as threads
    first allocate).  A value the operator set in the environment (``MALLOC_MMAP_THRESHOLD_``,
    ``MALLOC_ARENA_MAX``, read by glibc itself) is left alone.
    """
    if _LIBC is None:
        return {}
    applied: dict[str, int] = {}
    for env, param, value in (
        ("MALLOC_MMAP_THRESHOLD_", _M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
        ("MALLOC_ARENA_MAX", _M_ARENA_MAX, ARENA_MAX),
    ):
        if env in os.environ:
            continue
        if _LIBC.mallopt(param, value) == 1:
            applied[env] = value
        else:
            log.warning("mallopt refused a setting", extra={"parameter": env, "value": value})
    return applied


def release_free_memory() -> bool:
    """Return the heap's free pages to the OS; False where the C library cannot (blocking: call
    it from a worker thread)."""
    if _LIBC is None:
        return False
    with _lock:  # one trim at a time: it walks every arena
        _LIBC.malloc_trim(0)
    return True
