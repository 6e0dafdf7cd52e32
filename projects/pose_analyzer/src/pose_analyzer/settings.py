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
    # Several replicas share the database (a fleet behind a load balancer): start-up leaves the
    # streams other replicas have open alone (a stream a dead replica left open is closed when its
    # camera reconnects, storage/resume.py); false: this process is the database's only writer.
    shared_database: bool = False
    # Coaches' reference reps, one JSON file each (reference_store.py).
    references_dir: Path = Path("data/references")
    max_frame_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    max_streams: int = Field(default=32, gt=0)
    # Live streams: the shared batched backend waits this long for frames of other streams
    # before running a batch of at most stream_max_batch frames; 0: 8 on CUDA, 1 on CPU, where a
    # batch costs as much per frame as single frames and only delays the answers (4 YOLO streams
    # on 2 cores: batches of up to 8 at 157 ms p50 / 339 ms p99, single frames at 91 / 157 ms,
    # 24.1 and 24.5-25.2 fps).
    stream_batch_window_ms: float = Field(default=5.0, ge=0, le=100)
    stream_max_batch: int = Field(default=0, ge=0, le=64)
    # Instances of the shared batched model (YOLO), each in its own thread; 0: one on CUDA (the GPU
    # batches), one per CPU core up to 2 on CPU (where a batch costs as much per frame as single
    # frames, and a second instance decodes and analyses one batch while the other infers).
    stream_batch_replicas: int = Field(default=0, ge=0, le=8)
    # Frames analysed at once across all streams with per-stream detectors (MediaPipe); 0: CPU
    # cores + 1.  More makes the streams share the cores, so each frame takes longer and its answer
    # is older; exactly one per core leaves cores idle between frames.  Measured with 4 streams
    # on 2 cores: 2 slots 0.86 of the bare loop's fps at 84 ms p50, 3 slots 0.94 at 114 ms,
    # unbounded 0.96 at 141 ms.
    stream_compute_slots: int = Field(default=0, ge=0, le=256)
    # A client that does not read an answer within this time is closed with 1008: pings go out
    # behind the answers every quarter of it (at most 1 s), each pong due within it (ws_protocol).
    stream_send_timeout_s: float = Field(default=5.0, gt=0)
    # Kernel send buffer of the service's connections (0: the OS default, which grows to 4 MiB):
    # where the server cannot ping (see stream_send_timeout_s), a client that stops reading is
    # only noticed once this buffer and its own receive buffer are full.
    socket_send_buffer_bytes: int = Field(default=64 * 1024, ge=0, le=16 * 1024 * 1024)
    # On SIGTERM the service drains: /readyz answers 503 (the balancer sends no new streams), new
    # streams are refused (1013), and running ones are served until they end or this grace period
    # passes; those still open then are closed with 1012 (recorded "interrupted", every announced
    # rep committed) and the process exits.  Keep the orchestrator's stop timeout (docker compose
    # stop_grace_period, scripts/fleet.py stop) above it plus DRAIN_CLOSE_S (``__main__``).
    drain_grace_s: float = Field(default=10.0, ge=0, le=600)
    # false: live streams are answered but not recorded (no stream rows, no background writer);
    # 3D sessions still store their moments.  For answers-only deployments and for measuring
    # what the writer costs (benchmarks/fleet.py).
    record_streams: bool = True
    # An open stream commits what it recorded at least this often (bounds what a crash loses).
    stream_flush_interval_s: float = Field(default=10.0, gt=0)
    # A failed commit of a stream is tried this many times in all, waiting stream_commit_backoff_s
    # after the first failure, doubling up to 2 s (each attempt may also wait for a database lock).
    stream_commit_attempts: int = Field(default=4, ge=1, le=20)
    stream_commit_backoff_s: float = Field(default=0.2, ge=0, le=2.0)
    # Images (stream frames and /api/analyze) declaring more pixels are refused before decoding;
    # 4096 x 4096 fits every 4K camera.  At most 64 Mi pixels (Pillow's bomb guard is above it).
    max_image_pixels: int = Field(default=4096 * 4096, ge=1, le=64 * 1024 * 1024)
    # POST /api/analyze: images analysed at once (0: CPU cores), and requests that may wait for one
    # of those slots; more at once are answered 429 with Retry-After (each holds a decoded image).
    analyze_max_running: int = Field(default=0, ge=0, le=64)
    analyze_max_waiting: int = Field(default=8, ge=0, le=1024)
    # Refuse JPEGs whose data ends before the last block (two 1/8-scale decodes per JPEG).
    verify_jpeg_data: bool = True
    # 3D sessions: a group of frames waits at most this long (from its first frame's arrival)
    # for the cameras not yet in it, then is triangulated from those present.  Four MediaPipe
    # streams on 2 cores: a camera's frame arrives up to ~0.2 s after its group's first (p95).
    sync_deadline_s: float = Field(default=0.5, gt=0, le=10)
    # Distinct stream ids with their own metrics label; later ones share "other".
    metrics_stream_labels: int = Field(default=16, ge=0, le=256)
