"""MediaPipe backend against MediaPipe's own expected landmarks on a real photo."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from pose_analyzer.detection import Detector, DetectorError
from pose_analyzer.detection.mediapipe import MediaPipeDetector, person_from_landmarks
from pose_analyzer.detection.registry import backend_spec
from pose_analyzer.keypoints import MEDIAPIPE_TO_OURS, NUM_KEYPOINTS, Keypoint
from pose_analyzer.types import Frame

# MediaPipe's own tasks tests accept this difference per normalized coordinate.
TOLERANCE = 0.03


@pytest.fixture(scope="module")
def static_detector() -> Iterator[MediaPipeDetector]:
    detector = MediaPipeDetector(static_image_mode=True)
    detector.setup()
    yield detector
    detector.close()


@pytest.fixture(scope="module")
def test_image(test_data: Path) -> np.ndarray:
    image = cv2.imread(str(test_data / "images" / "mediapipe_pose_test_image.jpg"))
    assert image is not None
    return image


def test_reproduces_mediapipe_expected_landmarks(
    static_detector: MediaPipeDetector, test_image: np.ndarray, test_data: Path
) -> None:
    expected = json.loads((test_data / "expected" / "mediapipe_pose_test_image.landmarks.json").read_text())
    full = np.array(expected["models"]["full"], dtype=np.float32)[:, :2]

    (detections,) = static_detector.detect([Frame(test_image, 0.0)])

    assert len(detections.people) == 1
    person = detections.people[0]
    assert person.native is not None
    assert person.native.shape == (33, 4)
    assert np.abs(person.native[:, :2] - full).max() <= TOLERANCE


def test_maps_landmarks_to_our_layout_in_pixels(
    static_detector: MediaPipeDetector, test_image: np.ndarray
) -> None:
    height, width = test_image.shape[:2]
    (detections,) = static_detector.detect([Frame(test_image, 0.0)])
    person = detections.people[0]
    assert person.native is not None

    assert person.keypoints.shape == (NUM_KEYPOINTS, 3)
    assert person.keypoints.dtype == np.float32
    native = person.native[MEDIAPIPE_TO_OURS]
    np.testing.assert_allclose(person.keypoints[:, 0], native[:, 0] * width, rtol=1e-5)
    np.testing.assert_allclose(person.keypoints[:, 1], native[:, 1] * height, rtol=1e-5)
    np.testing.assert_allclose(person.keypoints[:, 2], native[:, 3], rtol=1e-5)
    # A seated athlete seen from the front: shoulders above hips above ankles, in pixels.
    kp = person.keypoints
    assert kp[Keypoint.LEFT_SHOULDER, 1] < kp[Keypoint.LEFT_HIP, 1] < kp[Keypoint.LEFT_ANKLE, 1]
    x1, y1, x2, y2 = person.box
    assert 0 <= x1 < x2 <= width
    assert 0 <= y1 < y2 <= height
    assert 0.0 < person.score <= 1.0


def test_tracking_mode_follows_a_video_in_order(test_data: Path) -> None:
    capture = cv2.VideoCapture(str(test_data / "videos" / "bridging_1rep.mp4"))
    frames = []
    for index in range(10):
        ok, image = capture.read()
        assert ok
        frames.append(Frame(image, index / 30.0, index))
    capture.release()
    detector = MediaPipeDetector()
    detector.setup()
    try:
        detections = detector.detect(frames)
    finally:
        detector.close()

    assert len(detections) == len(frames)
    assert all(len(d.people) == 1 for d in detections)
    hips = np.array([d.people[0].keypoints[Keypoint.LEFT_HIP, :2] for d in detections])
    # Consecutive frames of a slow exercise: the hip moves a few pixels, not across the frame.
    assert np.abs(np.diff(hips, axis=0)).max() < 40


def test_satisfies_the_detector_protocol() -> None:
    detector = MediaPipeDetector()
    assert isinstance(detector, Detector)
    assert detector.name == "mediapipe"
    assert backend_spec(detector.name).batches is False  # one stateful instance per stream


def test_detect_before_setup_is_an_error() -> None:
    with pytest.raises(DetectorError, match="before setup"):
        MediaPipeDetector().detect([Frame(np.zeros((8, 8, 3), np.uint8), 0.0)])


def test_rejects_a_grey_image(static_detector: MediaPipeDetector) -> None:
    with pytest.raises(DetectorError, match=r"frame 0: expected an \(H, W, 3\) uint8"):
        static_detector.detect([Frame(np.zeros((8, 8), np.uint8), 0.0)])


def test_rejects_confidence_outside_unit_range() -> None:
    with pytest.raises(ValueError, match="min_detection_confidence"):
        MediaPipeDetector(min_detection_confidence=1.5)


def test_landmark_array_of_the_wrong_shape_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"\(33, 4\)"):
        person_from_landmarks(np.zeros((17, 3), np.float32), 640, 480)
