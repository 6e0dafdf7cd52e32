"""YOLO backend on real photos: people counts, COCO keypoint AP, batching, the torch path."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from pose_analyzer.detection import Detector, DetectorError
from pose_analyzer.detection.metrics import GroundTruthPerson, PredictedPerson, keypoint_average_precision
from pose_analyzer.detection.registry import backend_spec
from pose_analyzer.detection.yolo import YoloDetector
from pose_analyzer.keypoints import NUM_COCO_KEYPOINTS, NUM_KEYPOINTS
from pose_analyzer.types import Frame

# Measured with the shipped yolo11n-pose at imgsz 640 through ONNX: AP 0.681 (OKS 0.50:0.95)
# on mmpose's four COCO val2017 test images (12 annotated people, all found).  Held a
# little lower so a regression fails.
MIN_COCO_AP = 0.66


def _read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    assert image is not None, path
    return image


@pytest.fixture(scope="module")
def detector(yolo_detector: YoloDetector) -> YoloDetector:
    return yolo_detector


@pytest.mark.parametrize(("name", "count"), [("bus.jpg", 4), ("zidane.jpg", 2)])
def test_counts_people_in_real_photos(detector: YoloDetector, test_data: Path, name: str, count: int) -> None:
    (detections,) = detector.detect([Frame(_read(test_data / "images" / name), 0.0)])

    assert len(detections.people) == count
    for person in detections.people:
        assert person.keypoints.shape == (NUM_KEYPOINTS, 3)
        assert person.native is not None
        np.testing.assert_array_equal(person.keypoints[:NUM_COCO_KEYPOINTS], person.native)
        # No foot points from YOLO: NaN with confidence 0.
        assert np.isnan(person.keypoints[NUM_COCO_KEYPOINTS:, :2]).all()
        assert (person.keypoints[NUM_COCO_KEYPOINTS:, 2] == 0).all()
        assert detector.conf < person.score <= 1.0
    assert detections.inference_ms > 0


def test_coco_keypoint_ap_holds(detector: YoloDetector, test_data: Path) -> None:
    coco_dir = test_data / "images" / "coco"
    annotations = json.loads((coco_dir / "test_coco.json").read_text())
    evaluated = []
    for image in annotations["images"]:
        truth = [
            GroundTruthPerson(
                keypoints=np.array(a["keypoints"], dtype=np.float64).reshape(NUM_COCO_KEYPOINTS, 3),
                box_xywh=tuple(a["bbox"]),
                area=float(a["area"]),
            )
            for a in annotations["annotations"]
            if a["image_id"] == image["id"] and not a["iscrowd"]
        ]
        (detections,) = detector.detect([Frame(_read(coco_dir / image["file_name"]), 0.0)])
        predicted = [PredictedPerson(p.keypoints[:NUM_COCO_KEYPOINTS], p.score) for p in detections.people]
        evaluated.append((truth, predicted))

    assert keypoint_average_precision(evaluated) >= MIN_COCO_AP


def test_a_batch_equals_single_frames(detector: YoloDetector, test_data: Path) -> None:
    images = [_read(test_data / "images" / n) for n in ("bus.jpg", "zidane.jpg")]
    images += [_read(p) for p in sorted((test_data / "images" / "coco").glob("*.jpg"))[:2]]
    frames = [Frame(image, float(i), i) for i, image in enumerate(images)]

    batched = detector.detect(frames)
    single = [detector.detect([frame])[0] for frame in frames]

    assert len(batched) == len(frames)
    for together, alone in zip(batched, single, strict=True):
        assert len(together.people) == len(alone.people)
        for a, b in zip(together.people, alone.people, strict=True):
            np.testing.assert_allclose(
                a.keypoints[:NUM_COCO_KEYPOINTS], b.keypoints[:NUM_COCO_KEYPOINTS], atol=0.5
            )
            np.testing.assert_allclose(a.box, b.box, atol=0.5)


def test_torch_runtime_agrees_with_onnx(detector: YoloDetector, test_data: Path) -> None:
    frame = Frame(_read(test_data / "images" / "bus.jpg"), 0.0)
    torch_detector = YoloDetector(runtime="torch")
    torch_detector.setup()
    try:
        (from_torch,) = torch_detector.detect([frame])
    finally:
        torch_detector.close()
    (from_onnx,) = detector.detect([frame])

    assert len(from_torch.people) == len(from_onnx.people)
    # Both see the same people; boxes differ a little because ultralytics pads the torch
    # input to a multiple of 32 instead of a square (most at the cut-off person on the edge).
    others = np.array([[(p.box[0] + p.box[2]) / 2, (p.box[1] + p.box[3]) / 2] for p in from_torch.people])
    for person in from_onnx.people:
        centre = np.array([(person.box[0] + person.box[2]) / 2, (person.box[1] + person.box[3]) / 2])
        height = person.box[3] - person.box[1]
        assert np.linalg.norm(others - centre, axis=1).min() < 0.15 * height


def test_satisfies_the_detector_protocol() -> None:
    yolo = YoloDetector()
    assert isinstance(yolo, Detector)
    assert yolo.name == "yolo"
    assert backend_spec(yolo.name).batches is True  # one model, frames of several streams batched
    assert yolo.runtime == "onnx"


def test_empty_batch_gives_no_detections(detector: YoloDetector) -> None:
    assert detector.detect([]) == []


def test_detect_before_setup_is_an_error() -> None:
    with pytest.raises(DetectorError, match="before setup"):
        YoloDetector().detect([Frame(np.zeros((32, 32, 3), np.uint8), 0.0)])


def test_rejects_a_float_image(detector: YoloDetector) -> None:
    good = Frame(np.zeros((32, 32, 3), np.uint8), 0.0)
    bad = Frame(np.zeros((32, 32, 3), np.float32), 0.0)
    with pytest.raises(DetectorError, match="frame 1: expected"):
        detector.detect([good, bad])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"device": "tpu"}, "device must be"),
        ({"runtime": "tensorrt"}, "runtime must be"),
        ({"runtime": "onnx", "device": "cuda"}, "CPU only"),
        ({"imgsz": 600}, "multiple of 32"),
        ({"conf": 1.5}, "conf must be"),
    ],
)
def test_rejects_invalid_options(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        YoloDetector(**options)  # type: ignore[arg-type]


def test_cuda_without_a_device_is_a_clear_error() -> None:
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(DetectorError, match="CUDA is not available"):
        YoloDetector(device="cuda").setup()
