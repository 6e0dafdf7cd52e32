"""pose_analyzer's settings: environment variables with the ``POSE_`` prefix, validated at start."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from service_kit.settings import ServiceSettings


class PoseSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="POSE_", extra="forbid", validate_default=True)

    port: int = Field(default=8001, ge=1, le=65535)
    backend: Literal["auto", "mediapipe", "yolo"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    yolo_weights: Path | None = None
    models_dir: Path = Path("models")
    cache_dir: Path = Path(".cache")
    database_url: str = "sqlite:///data/pose.db"
    max_frame_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    max_streams: int = Field(default=32, gt=0)
