"""The options every backend is built from, made in one place for the service and the CLI alike."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from pose_analyzer.settings import PoseSettings


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve_device(requested: str) -> str:
    """``"cpu"`` or ``"cuda"`` from a ``POSE_DEVICE`` value (``"auto"``: CUDA when torch sees one)."""
    if requested == "auto":
        return "cuda" if cuda_available() else "cpu"
    return requested


@dataclass(frozen=True, slots=True)
class DetectorOptions:
    """What a backend may need: YOLO reads the weights, device and directories; MediaPipe only
    ``still_images`` (single-image mode: no tracking between frames)."""

    weights: Path | None = None
    device: str = "cpu"
    models_dir: Path = Path("models")
    onnx_cache_dir: Path = Path(".cache") / "onnx"
    still_images: bool = False

    @classmethod
    def from_settings(cls, settings: PoseSettings, device: str | None = None) -> DetectorOptions:
        """The options of ``settings`` (``POSE_YOLO_WEIGHTS``, ``POSE_DEVICE``, ``POSE_MODELS_DIR``,
        ``POSE_CACHE_DIR``); ``device`` overrides the resolved ``POSE_DEVICE``."""
        return cls(
            weights=settings.yolo_weights,
            device=device or resolve_device(settings.device),
            models_dir=settings.models_dir,
            onnx_cache_dir=settings.cache_dir / "onnx",
        )

    def for_still_images(self) -> DetectorOptions:
        return replace(self, still_images=True)
