"""Storage tiers of the swapper: the tier names and the disk tier (one raw file per tensor)."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path

import torch


class Tier(StrEnum):
    """Where a swapped tensor's bytes currently live."""

    DEVICE = "device"
    HOST = "host"
    DISK = "disk"


def byte_view(tensor: torch.Tensor) -> memoryview:
    """The bytes of a contiguous CPU tensor, without a copy."""
    if tensor.numel() == 0:
        return memoryview(bytearray())
    return tensor.reshape(-1).view(torch.uint8).numpy().data


class DiskTier:
    """One raw file per tensor in ``directory``; written with one ``write``, read with ``readinto``.

    Files hold only the tensor bytes; dtype and shape stay with the swapper's entry, and the file size
    is checked on read. The files are scratch space (no fsync): they do not outlive the swapper.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, slot: int) -> Path:
        return self.directory / f"{slot:08d}.swap"

    def write(self, slot: int, tensor: torch.Tensor) -> None:
        """Write the bytes of a contiguous CPU tensor to the slot's file."""
        data = byte_view(tensor)
        fd = os.open(self.path(slot), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            written = os.write(fd, data)
            while written < len(data):  # writes over 2 GiB come back short on Linux
                written += os.write(fd, data[written:])
        finally:
            os.close(fd)

    def read_into(self, slot: int, out: torch.Tensor) -> None:
        """Fill the contiguous CPU tensor ``out`` from the slot's file.

        Raises:
            OSError: the file is missing or its size differs from ``out``'s.
        """
        data = byte_view(out)
        with open(self.path(slot), "rb", buffering=0) as f:
            size = os.fstat(f.fileno()).st_size
            if size != len(data):
                raise OSError(f"swap file {self.path(slot)} has {size} bytes, expected {len(data)}")
            got = 0
            while got < len(data):
                n = f.readinto(data[got:])
                if not n:
                    raise OSError(f"swap file {self.path(slot)} ended early")
                got += n

    def remove(self, slot: int) -> None:
        self.path(slot).unlink(missing_ok=True)
