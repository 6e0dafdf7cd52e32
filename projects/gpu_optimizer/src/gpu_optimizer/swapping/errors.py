"""Swapper errors."""

from __future__ import annotations


class SwapError(Exception):
    """Base class of tensor swapper failures."""


class UnknownTensorError(SwapError, KeyError):
    """No tensor is registered under that name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown tensor"


class TensorTooLargeError(SwapError, ValueError):
    """A tensor larger than the device budget: it could never be brought back for use."""


class SwapClosedError(SwapError, RuntimeError):
    """The swapper was closed."""


class DuplicateTensorError(SwapError, ValueError):
    """A tensor is already registered under that name."""
