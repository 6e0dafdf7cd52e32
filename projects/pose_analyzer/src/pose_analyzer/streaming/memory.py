"""Keep the heap from holding what ended streams freed (glibc only; elsewhere these do nothing).

What held it: glibc's per-thread arenas.  Each MediaPipe graph (one per stream, about 100 MB)
allocates from its own calculator threads and the worker threads, and glibc gives threads up to
8 arenas per core (16 here); a closed graph's blocks are freed across all of them, each arena's
free space pinned in place by the small blocks still alive around it, so a trim gets little
back and every round of streams fragments them further.  Measured in one process (16 graphs set
up at once from worker threads, a few frames each, closed, ``malloc_trim``): growth after each
round 248, 292, 260, 351 MB with glibc's defaults, 5, 5, 13 MB with two arenas.  In the service
(``benchmarks/pose_rss.py``, 16 streams, 3 rounds): +69, +95, +120 MB before, +6, +10, +12 MB
with ``tune_allocator``.  A fixed mmap threshold (no dynamic threshold) also held it (10, 3, 9
MB) but made every frame's image buffers fresh mappings: 26-28 ms per MediaPipe frame against
25 ms.
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

_M_ARENA_MAX = -8  # mallopt parameter (malloc.h)
# Heaps the threads allocate from: frames are decoded, detected and analysed on a few worker
# threads (two cores' worth), so more arenas add fragmentation, not speed.
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


def tune_allocator() -> bool:
    """Cap glibc's arenas at ``ARENA_MAX`` (see the module doc); True when it was set here.

    Call it first thing in the process, before threads allocate (a thread is given its arena at
    its first allocation).  ``MALLOC_ARENA_MAX`` set in the environment (read by glibc itself)
    is left alone.
    """
    if _LIBC is None or "MALLOC_ARENA_MAX" in os.environ:
        return False
    if _LIBC.mallopt(_M_ARENA_MAX, ARENA_MAX) != 1:
        log.warning("mallopt refused M_ARENA_MAX", extra={"value": ARENA_MAX})
        return False
    return True


def release_free_memory() -> bool:
    """Return the heap's free pages to the OS; False where the C library cannot (blocking: call
    it from a worker thread)."""
    if _LIBC is None:
        return False
    with _lock:  # one trim at a time: it walks every arena
        _LIBC.malloc_trim(0)
    return True
