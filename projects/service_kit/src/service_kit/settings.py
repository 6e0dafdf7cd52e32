"""Settings shared by both services and the digest that identifies an effective configuration."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Fields every service has.  Subclasses set ``env_prefix`` (``POSE_``, ``GPUOPT_``)."""

    model_config = SettingsConfigDict(extra="forbid", validate_default=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: str = Field(default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    log_dir: Path | None = Path("logs")
    api_key: SecretStr | None = None


def config_digest(settings: BaseSettings) -> str:
    """SHA-256 of the effective settings, secrets replaced by a marker of their presence.

    Two processes with the same digest run the same configuration; the digest goes into
    every log line and into /api/status/version.
    """
    data = settings.model_dump(mode="json")
    for name, value in settings:
        if isinstance(value, SecretStr):
            data[name] = "<set>"
    text = json.dumps({"type": type(settings).__name__, "settings": data}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()
