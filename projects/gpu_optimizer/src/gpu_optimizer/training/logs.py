"""JSON-line run logs: one object per line, each with the run name and the config digest."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import IO, Any


def clean_json(value: Any) -> Any:
    """NaN/Inf are not JSON: they are written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    return value


class JsonLog:
    """Appends events to `path` (line-buffered, so a killed process loses at most a partial line)."""

    def __init__(self, path: Path | None, run: str, digest: str, rank: int) -> None:
        self.run, self.digest, self.rank = run, digest, rank
        self._path = path
        self._file: IO[str] | None = None

    def write(self, event: str, **fields: Any) -> dict[str, Any]:
        record = {
            "ts": round(time.time(), 6),
            "event": event,
            "run": self.run,
            "config_digest": self.digest,
            "rank": self.rank,
            **clean_json(fields),
        }
        if self._path is not None:
            if self._file is None:  # opened on the first event, closed when the run ends
                self._path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self._path.open("a", buffering=1, encoding="utf-8")
            self._file.write(json.dumps(record, sort_keys=False) + "\n")
        return record

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_log(path: Path) -> list[dict[str, Any]]:
    """Every complete line of a run log (a torn last line of a killed process is skipped)."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
