"""Static analysis of single images: one detector per backend, built on first use, shared behind a lock.

Building a MediaPipe graph costs far more than running it on one image, so detectors are kept; the
detector runs in single-image mode and keypoints are not smoothed (there is no previous frame).
"""

from __future__ import annotations

import threading

import numpy as np
import numpy.typing as npt

from pose_analyzer.detection.base import Detector
from pose_analyzer.detection.options import DetectorOptions
from pose_analyzer.detection.registry import BACKENDS, angle_tolerance, build_detector
from pose_analyzer.engine import PoseEngine, detect_and_analyse
from pose_analyzer.exercises import ExerciseDefinition
from pose_analyzer.smoothing import SmoothingConfig
from pose_analyzer.types import Frame, FrameAnalysis


class ImageAnalyzers:
    """Single-image-mode detectors, one per backend, built lazily and used one request at a time.

    ``analyse`` blocks (model inference): call it from a worker thread.  Plain Python, no FastAPI.
    """

    def __init__(self, options: DetectorOptions) -> None:
        self.options = options.for_still_images()
        self._detectors: dict[str, Detector] = {}
        self._locks = {name: threading.Lock() for name in BACKENDS}
        # Detectors set up so far (model loads); stays at one per backend while they are reused.
        self.setups = 0

    def _detector(self, backend: str) -> Detector:
        """The backend's detector, set up on first use; the caller holds the backend's lock."""
        detector = self._detectors.get(backend)
        if detector is None:
            detector = build_detector(backend, self.options)
            detector.setup()
            self.setups += 1
            self._detectors[backend] = detector
        return detector

    def analyse(
        self, image: npt.NDArray[np.uint8], backend: str, exercise: ExerciseDefinition | None = None
    ) -> FrameAnalysis:
        """Detect and analyse the people of one BGR image with ``backend`` ("mediapipe" or "yolo").

        Raises:
            ValueError: an unknown backend.
            DetectorError: the backend could not start or failed on the image.
        """
        if backend not in self._locks:
            raise ValueError(f"unknown pose backend {backend!r}; valid: {', '.join(BACKENDS)}")
        with self._locks[backend]:
            engine = PoseEngine(
                exercise=exercise,
                smoothing=SmoothingConfig(enabled=False),
                angle_tolerance_deg=angle_tolerance(backend),
            )
            return detect_and_analyse(self._detector(backend), engine, Frame(image=image, timestamp=0.0))

    def warm(self, backend: str) -> None:
        """Set ``backend``'s detector up and run one blank image through it.

        Raises:
            DetectorError: the backend could not start or failed on the image.
        """
        self.analyse(np.zeros((480, 640, 3), np.uint8), backend)

    def close(self) -> None:
        """Release every detector built so far."""
        for backend, detector in list(self._detectors.items()):
            with self._locks[backend]:
                detector.close()
                del self._detectors[backend]
