"""The benchmark's frames: the four camera clips as JPEGs, encoded once before any clock starts."""

from __future__ import annotations

from pathlib import Path

import cv2

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA = REPO_ROOT / "tests" / "data"
CAMERAS = tuple(f"multicam/videos/cam0{i}.mp4" for i in range(1, 5))
SEND_FPS = 30.0


def encode_clip(path: Path, max_width: int, quality: int = 85) -> list[bytes]:
    """The clip's frames downscaled to ``max_width`` as JPEG, played forward then backward.

    Raises:
        ValueError: the clip has no readable frame.
    """
    capture = cv2.VideoCapture(str(path))
    images: list[bytes] = []
    try:
        while True:
            ok, image = capture.read()
            if not ok:
                break
            h, w = image.shape[:2]
            if w > max_width:
                image = cv2.resize(image, (max_width, round(h * max_width / w)), interpolation=cv2.INTER_AREA)
            images.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes())
    finally:
        capture.release()
    if not images:
        raise ValueError(f"no readable frame in {path}")
    return images + images[-2:0:-1]
