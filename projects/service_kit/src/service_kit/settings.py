"""Settings shared by both services and the digest that identifies an effective configuration."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import sys
from pathlib import Path
from typing import TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine (127.0.0.0/8, ::1, localhost).

    Anything else, a wildcard (``0.0.0.0``, ``::``, empty) or a name that might resolve to a
    public address, counts as reachable from the network.
    """
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


class ServiceSettings(BaseSettings):
    """Fields every service has.  Subclasses set ``env_prefix`` (``POSE_``, ``GPUOPT_``).

    Authentication cannot be switched off by accident: an empty key is an error (unset the
    variable instead), and a service bound to a non-loopback address refuses to start without
    a key unless ``allow_anonymous`` says so explicitly.
    """

    model_config = SettingsConfigDict(extra="forbid", validate_default=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: str = Field(default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    log_dir: Path | None = Path("logs")
    api_key: SecretStr | None = None
    # Serve without a key on a non-loopback address (a private network, a proxy that authenticates).
    allow_anonymous: bool = False
    # Require the key on /metrics, /docs, /redoc, /openapi.json and /api/status/version too; unset:
    # on when bound to a non-loopback address, off on loopback.  Needs an API key when true.
    protect_ops_endpoints: bool | None = None

    @field_validator("api_key")
    @classmethod
    def _key_not_blank(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and not key.get_secret_value().strip():
            raise ValueError(
                "the API key is set but empty, which would leave the service open: "
                "give a key, or unset the variable to run without one"
            )
        return key

    @model_validator(mode="after")
    def _no_open_service_by_accident(self) -> ServiceSettings:
        prefix = str(self.model_config.get("env_prefix", "")).upper()
        if self.api_key is None and not is_loopback(self.host) and not self.allow_anonymous:
            raise ValueError(
                f"refusing to listen on {self.host!r} without an API key: set {prefix}API_KEY, "
                f"bind to 127.0.0.1, or set {prefix}ALLOW_ANONYMOUS=true to serve anyone who can connect"
            )
        if self.protect_ops_endpoints and self.api_key is None:
            raise ValueError(f"{prefix}PROTECT_OPS_ENDPOINTS=true needs {prefix}API_KEY")
        return self

    @property
    def ops_endpoints_protected(self) -> bool:
        """Whether /metrics, the docs and /api/status/version ask for the key."""
        if self.api_key is None:
            return False
        if self.protect_ops_endpoints is None:
            return not is_loopback(self.host)
        return self.protect_ops_endpoints


SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


def load_settings(cls: type[SettingsT]) -> SettingsT:
    """Read ``cls`` from the environment; on a bad setting print why to stderr and exit with 2.

    For ``__main__``: an operator sees one line per problem, named by its environment
    variable, instead of a traceback (and the values, which may be secrets, are not echoed).
    """
    try:
        return cls()
    except ValidationError as exc:
        prefix = str(cls.model_config.get("env_prefix", "")).upper()
        lines = []
        for error in exc.errors(include_input=False, include_url=False):
            where = "_".join(str(part) for part in error["loc"]).upper()
            message = str(error["msg"]).removeprefix("Value error, ")
            lines.append(f"  {prefix}{where}: {message}" if where else f"  {message}")
        print(f"{cls.__name__}: invalid configuration, not starting:", *lines, sep="\n", file=sys.stderr)
        raise SystemExit(2) from None


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
