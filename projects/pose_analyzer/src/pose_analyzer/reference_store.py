"""Coaches' reference reps, kept as JSON files in one folder (``POSE_REFERENCES_DIR``).

Files, not database rows: a reference is a small immutable document (a few angle names and
at most a few hundred samples) that is always read whole when a stream or the CLI starts, never
queried by field; a file per reference is the same ``.json`` the CLI's ``--reference`` reads
(copy it out and use it offline), and needs no schema migration.  The cost: with several
service replicas the folder must be shared storage.

``<folder>/<exercise>/<name>.json``; names are checked against ``NAME_PATTERN`` before they
become paths, so no name can leave the folder.  Writes go to a temporary file then
``os.replace``: a reader sees the old or the new reference, never half of one.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pose_analyzer.exercises.reference import ReferenceMotion, reference_from_dict, reference_to_dict

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)


class ReferenceExistsError(Exception):
    """A reference of that name is already stored for that exercise."""


@dataclass(frozen=True, slots=True)
class StoredReference:
    exercise: str
    name: str
    motion: ReferenceMotion


class ReferenceStore:
    """Reads and writes reference reps under ``root``.

    Raises (every method):
        ValueError: a name that does not match ``NAME_PATTERN``.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, exercise: str, name: str) -> Path:
        for label, value in (("exercise", exercise), ("reference name", name)):
            if not _NAME.fullmatch(value):
                raise ValueError(f"a {label} is 1-64 of a-z, 0-9, _ and -, starting with a letter or digit")
        return self.root / exercise / f"{name}.json"

    def save(self, exercise: str, name: str, motion: ReferenceMotion) -> StoredReference:
        """Store ``motion``; raises ReferenceExistsError when ``name`` is taken for ``exercise``."""
        path = self._path(exercise, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps(reference_to_dict(motion))
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(data)
            # link() fails when the name exists: two coaches saving one name cannot overwrite.
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise ReferenceExistsError(f"reference {name!r} of {exercise!r} exists") from None
        finally:
            os.unlink(tmp)
        return StoredReference(exercise, name, motion)

    def load(self, exercise: str, name: str) -> StoredReference | None:
        """The stored reference, or None when there is none of that name."""
        path = self._path(exercise, name)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        return StoredReference(exercise, name, reference_from_dict(data))

    def names(self, exercise: str) -> list[str]:
        """Names of the references stored for ``exercise``, sorted."""
        folder = self._path(exercise, "x").parent
        if not folder.is_dir():
            return []
        return sorted(p.stem for p in folder.glob("*.json") if _NAME.fullmatch(p.stem))

    def delete(self, exercise: str, name: str) -> bool:
        """Remove a reference; False when there was none."""
        try:
            self._path(exercise, name).unlink()
        except FileNotFoundError:
            return False
        return True
