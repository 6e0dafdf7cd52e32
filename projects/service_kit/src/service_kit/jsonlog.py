"""Structured logs: one JSON object per line, to stdout and to ``<log_dir>/<service>.log``.

Every line, uvicorn's access and WebSocket lines included, passes through ``redact_secrets``:
an API key sent as a query parameter never reaches a log.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

from service_kit.redact import redact_secrets

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is logged.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line with the service name and configuration digest."""

    def __init__(self, service: str, config_digest: str) -> None:
        super().__init__()
        self.service = service
        self.config_digest = config_digest

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact_secrets(record.getMessage()),
            "service": self.service,
            "config_digest": self.config_digest,
        }
        event.update(
            {
                k: redact_secrets(v) if isinstance(v, str) else v
                for k, v in vars(record).items()
                if k not in _STANDARD_ATTRS
            }
        )
        if record.exc_info:
            event["exc"] = redact_secrets(self.formatException(record.exc_info))
        return json.dumps(event, default=str)


def configure_logging(service: str, level: str, log_dir: Path | None, config_digest: str) -> None:
    """Route the root logger (and uvicorn's) to JSON on stdout and, if ``log_dir`` is set, a rotating file."""
    formatter = JsonFormatter(service, config_digest)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(RotatingFileHandler(log_dir / f"{service}.log", maxBytes=20_000_000, backupCount=3))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_service_kit", False):
            root.removeHandler(old)
            old.close()
    for handler in handlers:
        handler.setFormatter(formatter)
        handler._service_kit = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uv_logger = logging.getLogger(name)
        uv_logger.handlers.clear()
        uv_logger.propagate = True
