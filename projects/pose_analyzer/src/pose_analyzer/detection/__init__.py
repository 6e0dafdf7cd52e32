"""Pose backends behind one small protocol, chosen by name from a registry, each with its detection path."""

from pose_analyzer.detection.base import Detector, DetectorError, check_frames
from pose_analyzer.detection.options import DetectorOptions
from pose_analyzer.detection.registry import (
    BACKENDS,
    UnknownBackendError,
    angle_tolerance,
    backend_spec,
    build_detector,
    create_detector,
    create_tracker,
    resolve_backend,
)

__all__ = [
    "BACKENDS",
    "Detector",
    "DetectorError",
    "DetectorOptions",
    "UnknownBackendError",
    "angle_tolerance",
    "backend_spec",
    "build_detector",
    "check_frames",
    "create_detector",
    "create_tracker",
    "resolve_backend",
]
