"""Pose backends behind one small protocol, chosen by name from a registry."""

from pose_analyzer.detection.base import Detector, DetectorError, check_frames
from pose_analyzer.detection.registry import BACKENDS, create_detector, resolve_backend

__all__ = ["BACKENDS", "Detector", "DetectorError", "check_frames", "create_detector", "resolve_backend"]
