"""Single-person MediaPipe Pose (BlazePose full), one stateful instance per stream."""

from __future__ import annotations

import time
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from pose_analyzer.detection.base import DetectorError, check_frames
from pose_analyzer.keypoints import MEDIAPIPE_TO_OURS
from pose_analyzer.types import Detections, Frame, Person

NUM_MEDIAPIPE_LANDMARKS = 33

# Only the "full" landmark model ships inside the mediapipe 0.10.21 wheel.  Complexity 0
# (lite) and 2 (heavy) download their .tflite at first use, which fails offline.
_MODEL_COMPLEXITY = 1


class MediaPipeDetector:
    """MediaPipe ``solutions.pose`` behind the Detector protocol.

    In tracking mode (``static_image_mode=False``) the graph reuses the last frame's
    landmarks to find the person in the next one, so an instance belongs to ONE stream
    and sees its frames in order; it is not batched and reports at most one person.

    ``Person.score`` is the mean visibility of the mapped keypoints (MediaPipe gives no
    person score); ``Person.native`` is the 33x4 normalized (x, y, z, visibility).
    """

    name = "mediapipe"

    def __init__(
        self,
        static_image_mode: bool = False,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
    ) -> None:
        for label, value in (
            ("min_detection_confidence", min_detection_confidence),
            ("min_tracking_confidence", min_tracking_confidence),
        ):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{label} must be in [0, 1], got {value}")
        self.static_image_mode = static_image_mode
        self.min_detection_confidence = min_detection_confidence
        self.min_tracking_confidence = min_tracking_confidence
        self._pose: Any = None

    def setup(self) -> None:
        """Build the MediaPipe graph.

        Raises:
            DetectorError: mediapipe is missing or its graph cannot start.
        """
        try:
            import mediapipe as mp

            self._pose = mp.solutions.pose.Pose(
                static_image_mode=self.static_image_mode,
                model_complexity=_MODEL_COMPLEXITY,
                min_detection_confidence=self.min_detection_confidence,
                min_tracking_confidence=self.min_tracking_confidence,
            )
        except Exception as exc:
            raise DetectorError(f"MediaPipe Pose could not start: {exc}") from exc

    def detect(self, frames: list[Frame]) -> list[Detections]:
        """One Detections per frame (zero or one person), processed in order.

        Raises:
            DetectorError: called before ``setup``, or a frame that is not a BGR uint8 image.
        """
        if self._pose is None:
            raise DetectorError("MediaPipeDetector.detect called before setup()")
        check_frames(frames)
        detections = []
        for frame in frames:
            start = time.perf_counter()
            rgb = cv2.cvtColor(frame.image, cv2.COLOR_BGR2RGB)
            result = self._pose.process(rgb)
            people = []
            if result.pose_landmarks is not None:
                native = np.array(
                    [(lm.x, lm.y, lm.z, lm.visibility) for lm in result.pose_landmarks.landmark],
                    dtype=np.float32,
                )
                height, width = frame.image.shape[:2]
                people.append(person_from_landmarks(native, width, height))
            elapsed_ms = (time.perf_counter() - start) * 1000.0
            detections.append(Detections(people=people, inference_ms=elapsed_ms))
        return detections

    def close(self) -> None:
        """Release the graph; ``setup`` may be called again."""
        if self._pose is not None:
            self._pose.close()
            self._pose = None


def person_from_landmarks(native: npt.NDArray[np.float32], width: int, height: int) -> Person:
    """Map MediaPipe's 33 normalized landmarks (x, y, z, visibility) to a Person in pixels.

    The box spans all 33 landmarks, clipped to the frame (landmarks may lie outside it).

    Raises:
        ValueError: ``native`` is not (33, 4).
    """
    if native.shape != (NUM_MEDIAPIPE_LANDMARKS, 4):
        raise ValueError(f"expected ({NUM_MEDIAPIPE_LANDMARKS}, 4) landmarks, got {native.shape}")
    mapped = native[MEDIAPIPE_TO_OURS]
    keypoints = np.empty((len(MEDIAPIPE_TO_OURS), 3), dtype=np.float32)
    keypoints[:, 0] = mapped[:, 0] * width
    keypoints[:, 1] = mapped[:, 1] * height
    keypoints[:, 2] = np.clip(mapped[:, 3], 0.0, 1.0)
    xs = np.clip(native[:, 0] * width, 0, width)
    ys = np.clip(native[:, 1] * height, 0, height)
    box = (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))
    return Person(keypoints=keypoints, box=box, score=float(keypoints[:, 2].mean()), native=native)
