"""Fixtures shared by the pose_analyzer unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pose_analyzer.detection.yolo import YoloDetector


@pytest.fixture(scope="session")
def yolo_detector() -> Iterator[YoloDetector]:
    """One YOLO11n-pose detector for every test that reads real frames with it (set up once).

    The default cache (./.cache/onnx) is shared with the service: exported once per machine.
    """
    yolo = YoloDetector()
    yolo.setup()
    yield yolo
    yolo.close()
