"""The hashes a manifest can name: BLAKE3 for new checkpoints, SHA-256 for those of format 1.

BLAKE3 runs at about 3 GB/s on one core of this machine where SHA-256 (with SHA-NI) runs at about
1 GB/s, so hashing every byte, in a thread beside the I/O, no longer bounds a save or a load.
Both release the GIL while they hash a chunk. One hashing thread per file: the other core does the
I/O, and BLAKE3's own threads (``max_threads``) only slowed it down on two busy cores (measured:
2.3-3.6 GB/s with one thread, 1.3-2.3 GB/s with two).
"""

from __future__ import annotations

import hashlib
import re
from typing import Protocol

import blake3

BLAKE3 = "blake3"
SHA256 = "sha256"
DEFAULT = BLAKE3
ALGORITHMS = (BLAKE3, SHA256)
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


class Hasher(Protocol):
    """The part of ``hashlib``'s and ``blake3``'s hash objects used here."""

    def update(self, data: memoryview | bytes, /) -> object: ...

    def hexdigest(self) -> str: ...


def new_hasher(algorithm: str) -> Hasher:
    """A fresh hash object for ``algorithm`` (one of ``ALGORITHMS``).

    Raises:
        ValueError: an unknown algorithm.
    """
    if algorithm == BLAKE3:
        return blake3.blake3(max_threads=1)
    if algorithm == SHA256:
        return hashlib.sha256()
    raise ValueError(f"unknown hash algorithm {algorithm!r}; known: {', '.join(ALGORITHMS)}")


def is_hex_digest(value: object) -> bool:
    """True for a lower-case hex digest of 32 bytes, the length both algorithms produce here."""
    return isinstance(value, str) and _HEX_DIGEST.fullmatch(value) is not None
