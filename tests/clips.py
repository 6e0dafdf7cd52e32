"""Real clips as the frames a camera client would send: (capture time in s, JPEG bytes)."""

from __future__ import annotations

from pathlib import Path

import cv2


def encoded_frames(
    video: Path, step: int, width: int, limit: int | None = None, quality: int = 85
) -> list[tuple[float, bytes]]:
    """Every ``step``-th frame of ``video`` (at most ``limit``), downscaled to ``width``, as JPEG."""
    capture = cv2.VideoCapture(str(video))
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames: list[tuple[float, bytes]] = []
    index = 0
    try:
        while limit is None or len(frames) < limit:
            ok, image = capture.read()
            if not ok:
                break
            if index % step == 0:
                h, w = image.shape[:2]
                image = cv2.resize(image, (width, round(h * width / w)), interpolation=cv2.INTER_AREA)
                jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1]
                frames.append((index / fps, jpeg.tobytes()))
            index += 1
    finally:
        capture.release()
    return frames
