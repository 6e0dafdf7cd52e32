"""The small lifecycle every pose backend follows: set up once, then detect batches."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from pose_analyzer.types import Detections, Frame


class DetectorError(RuntimeError):
    """A backend could not be set up or could not process a frame."""


@runtime_checkable
class Detector(Protocol):
    """A pose backend.

    ``name`` is the registry name (``"mediapipe"``, ``"yolo"``).  Whether frames of several
    streams share one ``detect`` call is the registry's ``BackendSpec.batches``.
    """

    name: str

    def setup(self) -> None:
        """Load weights and warm up. Raises DetectorError with the reason on failure."""

    def detect(self, frames: list[Frame]) -> list[Detections]:
        """Return one Detections per frame, in order."""

    def close(self) -> None:
        """Release the model."""


def check_frames(frames: list[Frame]) -> None:
    """Reject what no backend can read, with a message that says which frame and why.

    Raises:
        DetectorError: a frame whose image is not an (H, W, 3) uint8 BGR array with H, W > 0.
    """
    for position, frame in enumerate(frames):
        image = frame.image
        if not isinstance(image, np.ndarray):
            raise DetectorError(f"frame {position}: image is {type(image).__name__}, not a numpy array")
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
            raise DetectorError(
                f"frame {position}: expected an (H, W, 3) uint8 BGR image, got {image.dtype} {image.shape}"
            )
