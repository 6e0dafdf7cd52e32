"""Choose and build a pose backend by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pose_analyzer.detection.base import Detector

BACKENDS: tuple[str, ...] = ("mediapipe", "yolo")
AUTO = "auto"


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve_backend(requested: str, cuda_available: bool | None = None) -> tuple[str, str]:
    """Turn a requested backend name into a concrete one, with a reason a person can read.

    ``"auto"`` picks ``"yolo"`` (multi-person, batched) when CUDA is available, else
    ``"mediapipe"`` (fast single-person on CPU).  ``cuda_available=None`` asks torch.

    Raises:
        ValueError: an unknown name; the message lists the valid ones.
    """
    name = requested.strip().lower()
    if name in BACKENDS:
        return name, f"{name} was requested"
    if name != AUTO:
        valid = ", ".join((AUTO, *BACKENDS))
        raise ValueError(f"unknown pose backend {requested!r}; valid: {valid}")
    has_cuda = _cuda_available() if cuda_available is None else cuda_available
    if has_cuda:
        return "yolo", "auto: CUDA is available, so the multi-person YOLO backend runs on the GPU"
    return "mediapipe", "auto: no CUDA device, so the single-person MediaPipe backend runs on the CPU"


def create_detector(name: str, **options: Any) -> Detector:
    """Build (not set up) the backend ``name`` with its constructor ``options``.

    ``"auto"`` is resolved with :func:`resolve_backend` first.

    Raises:
        ValueError: an unknown name, or options the backend rejects.
    """
    backend, _ = resolve_backend(name)
    # Imported here so that choosing one backend does not load the other's libraries.
    factory: Callable[..., Detector]
    if backend == "mediapipe":
        from pose_analyzer.detection.mediapipe import MediaPipeDetector

        factory = MediaPipeDetector
    else:
        from pose_analyzer.detection.yolo import YoloDetector

        factory = YoloDetector
    try:
        return factory(**options)
    except TypeError as exc:  # an option the backend does not take
        raise ValueError(f"invalid options for the {backend} backend: {exc}") from exc
