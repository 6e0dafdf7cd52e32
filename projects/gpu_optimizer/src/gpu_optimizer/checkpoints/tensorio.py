"""Fast reader and writer of the safetensors file format, hashing the bytes as they stream.

The files are standard safetensors (``safetensors.torch.load_file`` reads them); writing them here
instead of through ``safetensors.torch.save_file`` avoids its full in-memory copy of every tensor, and
lets the hash (BLAKE3, or SHA-256 for format-1 checkpoints; see ``hashing``) run in a second thread
while the bytes go to the disk (both release the GIL), so the checkpoint hash costs no extra pass
over the data; a file of one chunk is hashed in the writing thread after its write. Reading goes
the other way: one preallocated buffer that the returned tensors are views of (no copy after the
read), filled by a few concurrent positional reads, each chunk hashed in file order as soon as it
is in.

Chunks are 8 MiB: large enough that system-call and thread hand-off costs vanish, small enough that
the pipeline fills and drains fast (the hasher idles until the first chunk is in, and the last chunk
is hashed after the I/O is done; with 64 MiB chunks that was a quarter of a 256 MiB file).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import mmap
import os
import struct
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from gpu_optimizer.checkpoints.atomic import write_all
from gpu_optimizer.checkpoints.errors import CheckpointCorruptError, UnsupportedStateError
from gpu_optimizer.checkpoints.hashing import DEFAULT, new_hasher
from gpu_optimizer.checkpoints.paths import open_file

CHUNK_BYTES = 8 << 20
READERS = 4
# Files from this size on are read with O_DIRECT unless they are in the page cache already.
DIRECT_MIN_BYTES = 32 << 20
# Buffers from this size on are backed by transparent huge pages where the kernel offers them.
HUGE_MIN_BYTES = 4 << 20
_PAGE = 4096
_HUGE_PAGE = 2 << 20

_DTYPES: dict[torch.dtype, str] = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.uint16: "U16",
    torch.uint32: "U32",
    torch.uint64: "U64",
    torch.bool: "BOOL",
    torch.float8_e4m3fn: "F8_E4M3",
    torch.float8_e5m2: "F8_E5M2",
    torch.complex64: "C64",
}
_BY_NAME = {code: dtype for dtype, code in _DTYPES.items()}


@dataclass(frozen=True)
class FileDigest:
    """Hash (hex), size in bytes and hash algorithm of a written or read file."""

    digest: str
    size: int
    algorithm: str = DEFAULT


def _byte_view(tensor: torch.Tensor) -> memoryview:
    flat = tensor.detach().reshape(-1)
    if flat.numel() == 0:
        return memoryview(b"")
    return flat.view(torch.uint8).numpy().data


def _header(
    tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None
) -> tuple[bytes, list[str]]:
    # Largest element size first (as safetensors itself does), so every tensor starts at an offset
    # aligned to its element size and can be viewed in place after reading.
    order = sorted(tensors, key=lambda k: (-tensors[k].element_size(), k))
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset = 0
    for key in order:
        tensor = tensors[key]
        if tensor.dtype not in _DTYPES:
            raise UnsupportedStateError(
                f"tensor {key!r} has dtype {tensor.dtype}, which safetensors cannot store"
            )
        size = tensor.numel() * tensor.element_size()
        header[key] = {
            "dtype": _DTYPES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-(len(raw) + 8) % 8)
    return struct.pack("<Q", len(raw)) + raw, order


def write_tensors(
    path: Path,
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str] | None = None,
    algorithm: str = DEFAULT,
) -> FileDigest:
    """Write CPU ``tensors`` as a safetensors file at ``path`` and fsync it.

    Returns:
        The hash (``algorithm``) and size of the file, computed from the bytes as they were written.

    Raises:
        UnsupportedStateError: a tensor is not on the CPU or has a dtype safetensors cannot hold.
    """
    for key, tensor in tensors.items():
        if tensor.device.type != "cpu":
            raise UnsupportedStateError(f"tensor {key!r} is on {tensor.device}; copy it to the CPU first")
    contiguous = {k: t.detach().contiguous() for k, t in tensors.items()}
    head, order = _header(contiguous, metadata)
    pieces = [memoryview(head)] + [_byte_view(contiguous[k]) for k in order]
    digest = new_hasher(algorithm)
    size = sum(len(piece) for piece in pieces)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        if size <= CHUNK_BYTES:
            # A file of one chunk is hashed here, after its write: no hashing thread to start and
            # no hand-off per tensor. In an asynchronous save each of those is a GIL round trip
            # with the training thread (measured: a fifth of what a periodic save of a 5 MB state cost the
            # training loop on 2 busy cores).
            for piece in pieces:
                write_all(fd, piece)
                digest.update(piece)
            os.fsync(fd)
            return FileDigest(digest.hexdigest(), size, algorithm)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ckpt-hash") as hasher:
            pending: list[Future[object]] = []
            for piece in pieces:
                for start in range(0, len(piece), CHUNK_BYTES):
                    chunk = piece[start : start + CHUNK_BYTES]
                    pending.append(hasher.submit(digest.update, chunk))
                    write_all(fd, chunk)
            # fsync first: the disk flush releases the GIL and overlaps the hashing still queued.
            os.fsync(fd)
            for fut in pending:
                fut.result()
    finally:
        os.close(fd)
    return FileDigest(digest.hexdigest(), size, algorithm)


def read_tensors(
    path: Path, expected: FileDigest | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file into CPU tensors that share one preallocated buffer.

    Returns:
        ``(tensors, metadata)``, the metadata being the file's ``__metadata__`` map.

    Args:
        path: the file.
        expected: when given, the hash and size the file must have; checked over the bytes read.

    Raises:
        CheckpointCorruptError: the size or hash does not match, or the header is malformed.
        UnsafePathError: ``path`` is a symbolic link (never followed).
    """
    with os.fdopen(open_file(path), "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        if expected is not None and size != expected.size:
            raise CheckpointCorruptError(f"{path.name}: size {size} != recorded {expected.size}")
        if size < 8:
            raise CheckpointCorruptError(f"{path.name}: truncated header")
        direct = size >= DIRECT_MIN_BYTES and not _cached(f.fileno(), size) and _set_direct(f.fileno(), True)
        try:
            whole, hexdigest = _read_whole(f.fileno(), size, expected, direct, path.name)
        except OSError as exc:
            if not direct or exc.errno != errno.EINVAL:
                raise
            _set_direct(f.fileno(), False)  # a filesystem that takes O_DIRECT only in name
            whole, hexdigest = _read_whole(f.fileno(), size, expected, False, path.name)
    if expected is not None and hexdigest != expected.digest:
        raise CheckpointCorruptError(f"{path.name}: {expected.algorithm} hash does not match the manifest")
    (header_len,) = struct.unpack("<Q", whole[:8].numpy().tobytes())
    if header_len > size - 8:
        raise CheckpointCorruptError(f"{path.name}: header length {header_len} exceeds the file")
    head = whole[8 : 8 + header_len].numpy().tobytes()
    data = whole[8 + header_len :]
    if (8 + header_len) % 8:  # a header not padded to 8 bytes (not ours): align by a copy
        data = data.clone()
    return _split(path, head, data)


def _cached(fd: int, size: int) -> bool:
    """Whether the start, middle and end of the file are in the page cache (read without I/O)."""
    if not hasattr(os, "RWF_NOWAIT"):
        return True
    probe = memoryview(bytearray(4096))
    for offset in (0, size // 2, size - 1):
        try:
            os.preadv(fd, [probe], offset // 4096 * 4096, os.RWF_NOWAIT)
        except OSError:  # EAGAIN: not cached; EOPNOTSUPP: cannot tell, read directly
            return False
    return True


def _set_direct(fd: int, on: bool) -> bool:
    """Turn ``O_DIRECT`` on or off for ``fd``; False where the system or filesystem refuses it."""
    if not hasattr(os, "O_DIRECT"):
        return False
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_DIRECT if on else flags & ~os.O_DIRECT)
    except OSError:
        return False
    return True


def _read_whole(
    fd: int, size: int, expected: FileDigest | None, direct: bool, name: str
) -> tuple[torch.Tensor, str]:
    """The whole file in one buffer, and its hash.

    Several reads are in flight to keep the disk's queue deep (on this VM's disk, 8 MiB reads one
    after another reached half the speed of one large read; four readers of 16 MiB chunks matched
    it), while this thread hashes the chunks in file order as they arrive. With ``direct`` the disk
    writes straight into the (page-aligned) buffer: no copy out of the page cache, which leaves a
    core free for the hash when the file is not cached.
    """
    chunk_bytes = 2 * CHUNK_BYTES
    if direct:
        padded = -(-size // _PAGE) * _PAGE
        chunk_bytes = -(-chunk_bytes // _PAGE) * _PAGE
    else:
        padded = size
    whole = _fresh_buffer(padded)
    view = whole.numpy().data
    digest = new_hasher(expected.algorithm if expected is not None else DEFAULT)
    got = 0
    with ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="ckpt-read") as readers:
        chunks = [
            readers.submit(_pread_some, fd, view[start : start + chunk_bytes], start)
            for start in range(0, padded, chunk_bytes)
        ]
        try:
            for chunk in chunks:
                data = chunk.result()[: max(0, size - got)]
                digest.update(data)
                got += len(data)
        finally:
            for chunk in chunks:
                chunk.cancel()
    if got != size:
        raise CheckpointCorruptError(f"{name}: file ended early")
    return whole[:size], digest.hexdigest()


def _fresh_buffer(nbytes: int) -> torch.Tensor:
    """Uninitialised CPU memory for ``nbytes`` bytes, page-aligned (as ``O_DIRECT`` needs).

    A large buffer is an anonymous mapping aligned to 2 MiB and advised ``MADV_HUGEPAGE``: the
    kernel then hands it out as 2 MiB pages, 512 times fewer page faults than 4 KiB pages (each
    fault also zeroes its page). Measured here, 1 GiB read with ``O_DIRECT`` from a cold cache: 0.98 s
    into ``torch.empty`` memory, 0.35 s into huge pages; ``torch.load`` pays the 4 KiB faults too.
    The tensor keeps the mapping alive; it is unmapped with its last view.
    """
    if nbytes < HUGE_MIN_BYTES or not hasattr(mmap, "MADV_HUGEPAGE"):
        backing = torch.empty(nbytes + _PAGE, dtype=torch.uint8)
        skip = -backing.data_ptr() % _PAGE
        return backing[skip : skip + nbytes]
    mapping = mmap.mmap(-1, nbytes + _HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    backing = torch.frombuffer(mapping, dtype=torch.uint8)
    skip = -backing.data_ptr() % _HUGE_PAGE
    # A kernel without transparent huge pages refuses the advice: 4 KiB pages, as torch.empty gives.
    with contextlib.suppress(OSError):
        mapping.madvise(mmap.MADV_HUGEPAGE, skip, nbytes)
    return backing[skip : skip + nbytes]


def _split(path: Path, head: bytes, data: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        header = json.loads(head)
    except ValueError as exc:
        raise CheckpointCorruptError(f"{path.name}: header is not JSON") from exc
    metadata = header.pop("__metadata__", None) or {}
    out: dict[str, torch.Tensor] = {}
    for key, spec in header.items():
        begin, end = spec["data_offsets"]
        dtype = _BY_NAME.get(spec["dtype"])
        if dtype is None or not 0 <= begin <= end <= data.numel():
            raise CheckpointCorruptError(f"{path.name}: bad entry for {key!r}")
        out[key] = data[begin:end].view(dtype).reshape(spec["shape"])
    return out, {str(k): str(v) for k, v in metadata.items()}


def hash_file(path: Path, algorithm: str = DEFAULT) -> FileDigest:
    """Hash and size of any file: a few positional reads in flight, hashed in file order.

    Raises:
        UnsafePathError: ``path`` is a symbolic link (never followed).
        FileNotFoundError: ``path`` does not exist.
    """
    digest = new_hasher(algorithm)
    size = 0
    chunk_bytes = 2 * CHUNK_BYTES
    with (
        os.fdopen(open_file(path), "rb", buffering=0) as f,
        ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="ckpt-hash-read") as readers,
    ):
        end = os.fstat(f.fileno()).st_size
        # One buffer per read in flight; a buffer is reused only after its chunk was hashed.
        buffers = [memoryview(bytearray(chunk_bytes)) for _ in range(READERS)]
        inflight: deque[Future[memoryview]] = deque()
        offset = turn = 0
        while True:
            while len(inflight) < READERS and offset < end:
                inflight.append(readers.submit(_pread_some, f.fileno(), buffers[turn], offset))
                offset += chunk_bytes
                turn = (turn + 1) % READERS
            if not inflight:
                break
            data = inflight.popleft().result()
            digest.update(data)
            size += len(data)
    return FileDigest(digest.hexdigest(), size, algorithm)


def _pread_some(fd: int, buffer: memoryview, offset: int) -> memoryview:
    """Fill ``buffer`` from ``offset``, or as much of it as the file holds."""
    got = 0
    while got < len(buffer) and (n := os.preadv(fd, [buffer[got:]], offset + got)):
        got += n
    return buffer[:got]
