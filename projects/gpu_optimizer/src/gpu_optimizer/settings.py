"""gpu_optimizer's settings: environment variables with the ``GPUOPT_`` prefix, validated at start."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from service_kit.settings import ServiceSettings


class GpuOptSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GPUOPT_", extra="forbid", validate_default=True)

    port: int = Field(default=8002, ge=1, le=65535)
    sample_interval_s: float = Field(default=1.0, gt=0)
    checkpoint_root: Path = Path("checkpoints")
    database_url: str = "sqlite:///data/gpu_optimizer.db"
    expected_cuda: str | None = None
    temperature_warning_celsius: float = 80.0
    temperature_critical_celsius: float = 90.0
    memory_warning_ratio: float = Field(default=0.90, gt=0, le=1)
    memory_critical_ratio: float = Field(default=0.97, gt=0, le=1)
    swap_pool_stale_after_s: float = Field(default=60.0, gt=0)
    # Profiling jobs: how many run at once, and how many may wait (more are refused with 429).
    job_workers: int = Field(default=1, ge=1, le=64)
    job_queue_size: int = Field(default=16, ge=1, le=10_000)
    # Swap pools: at most this many in all (bounds /metrics), and per reporting process.
    swap_pools_max: int = Field(default=256, ge=1, le=100_000)
    swap_pools_per_process: int = Field(default=32, ge=1, le=100_000)
    # Largest swap-pool report body accepted (413 beyond).
    swap_pool_report_max_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    profile_allowed_imports: list[str] = Field(
        default_factory=list,
        description='model factories ("package.module:callable") POST /api/profile may import',
    )
