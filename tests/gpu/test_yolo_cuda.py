"""YOLO on CUDA in half precision (skipped without a CUDA device, see tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from pose_analyzer.detection.yolo import YoloDetector
from pose_analyzer.types import Frame


@pytest.fixture(scope="module")
def cuda_detector() -> Iterator[YoloDetector]:
    detector = YoloDetector(device="cuda")
    assert detector.runtime == "torch"
    detector.setup()
    yield detector
    detector.close()


@pytest.fixture(scope="module")
def bus(test_data: Path) -> Frame:
    image = cv2.imread(str(test_data / "images" / "bus.jpg"))
    assert image is not None
    return Frame(image, 0.0)


def test_half_precision_finds_the_same_people_as_cpu(cuda_detector: YoloDetector, bus: Frame) -> None:
    cpu = YoloDetector()
    cpu.setup()
    try:
        (on_cpu,) = cpu.detect([bus])
    finally:
        cpu.close()
    (on_cuda,) = cuda_detector.detect([bus])

    assert len(on_cuda.people) == len(on_cpu.people) == 4
    model = cuda_detector._torch
    assert next(model.model.parameters()).dtype.is_floating_point
    assert next(model.model.parameters()).device.type == "cuda"


def test_a_batch_on_cuda_equals_single_frames(cuda_detector: YoloDetector, bus: Frame) -> None:
    frames = [bus, Frame(np.ascontiguousarray(bus.image[:, ::-1]), 1.0), bus, bus]
    batched = cuda_detector.detect(frames)
    single = [cuda_detector.detect([frame])[0] for frame in frames]
    for together, alone in zip(batched, single, strict=True):
        assert len(together.people) == len(alone.people)
        for a, b in zip(together.people, alone.people, strict=True):
            np.testing.assert_allclose(a.box, b.box, atol=2.0)
