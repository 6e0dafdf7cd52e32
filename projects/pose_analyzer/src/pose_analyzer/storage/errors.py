"""Errors of the storage layer, one base class so callers can map them in one place."""

from __future__ import annotations


class StorageError(Exception):
    """The database could not be opened, migrated or written."""


class SessionNotFoundError(StorageError, LookupError):
    """No session has the id asked for."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"no session with id {session_id!r}")
        self.session_id = session_id


class RecorderClosedError(StorageError):
    """A stream recorder was used after ``finish()``."""
