"""Choosing a backend by name."""

from __future__ import annotations

import pytest

from pose_analyzer.detection import Detector, create_detector, resolve_backend
from pose_analyzer.detection.mediapipe import MediaPipeDetector
from pose_analyzer.detection.registry import multi_person
from pose_analyzer.detection.yolo import YoloDetector


def test_auto_without_cuda_picks_mediapipe_and_says_why() -> None:
    name, reason = resolve_backend("auto", cuda_available=False)
    assert name == "mediapipe"
    assert "no CUDA" in reason


def test_auto_with_cuda_picks_yolo() -> None:
    name, reason = resolve_backend("auto", cuda_available=True)
    assert name == "yolo"
    assert "CUDA is available" in reason


@pytest.mark.parametrize("requested", ["yolo", "YOLO", " mediapipe "])
def test_explicit_names_are_kept(requested: str) -> None:
    name, reason = resolve_backend(requested, cuda_available=False)
    assert name == requested.strip().lower()
    assert "requested" in reason


def test_unknown_backend_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown pose backend 'openpose'; valid: auto, mediapipe, yolo"):
        resolve_backend("openpose")
    with pytest.raises(ValueError, match="unknown pose backend"):
        create_detector("openpose")


def test_create_detector_builds_the_backend_with_options() -> None:
    mediapipe = create_detector("mediapipe", static_image_mode=True)
    yolo = create_detector("yolo", imgsz=320, conf=0.4)

    assert isinstance(mediapipe, MediaPipeDetector)
    assert mediapipe.static_image_mode
    assert isinstance(yolo, YoloDetector)
    assert (yolo.imgsz, yolo.conf) == (320, 0.4)
    assert isinstance(mediapipe, Detector)
    assert isinstance(yolo, Detector)


def test_an_option_the_backend_lacks_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="invalid options for the mediapipe backend"):
        create_detector("mediapipe", imgsz=640)


def test_only_yolo_reports_several_people_for_3d_association() -> None:
    assert multi_person("yolo") is True
    assert multi_person("mediapipe") is False
    with pytest.raises(ValueError, match="unknown pose backend"):
        multi_person("openpose")
