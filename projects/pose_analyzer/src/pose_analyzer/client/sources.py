"""Camera sources for the stream client: a webcam index, an RTSP/HTTP URL or a video file, as JPEG frames.

OpenCV reads and encodes in a worker thread.  A video file is paced at its own fps like a camera
(a frame whose time has passed while the client was busy or reconnecting is skipped, as a camera's
frame would be gone) unless ``as_fast_as_possible``; its capture times are the video's own clock.
A live source is read as it delivers and stamped with the wall clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

DEFAULT_FPS = 30.0


class SourceError(Exception):
    """A source that cannot be opened or read."""


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One frame as it goes on the wire: capture time (s, increasing) and JPEG bytes."""

    capture_ts: float
    jpeg: bytes


def jpeg_encode(image: npt.NDArray[np.uint8], quality: int, max_width: int | None) -> bytes:
    """``image`` (BGR) downscaled to at most ``max_width`` pixels wide, as a JPEG of ``quality``."""
    height, width = image.shape[:2]
    if max_width is not None and width > max_width:
        size = (max_width, max(1, round(height * max_width / width)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise SourceError("OpenCV could not encode a frame as JPEG")
    return data.tobytes()


class FrameSource:
    """Frames of one camera (``spec``: a webcam index such as ``0``, a URL, or a video file path)."""

    def __init__(
        self,
        spec: str,
        *,
        jpeg_quality: int = 80,
        max_width: int | None = 640,
        as_fast_as_possible: bool = False,
        every: int = 1,
        loop: bool = False,
    ) -> None:
        if not 1 <= jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be 1-100, got {jpeg_quality}")
        if max_width is not None and max_width < 16:
            raise ValueError(f"max_width must be at least 16 pixels, got {max_width}")
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.spec = spec
        self.jpeg_quality = jpeg_quality
        self.max_width = max_width
        self.every = every  # send every N-th frame (a camera or file faster than needed)
        self.is_file = not spec.isdigit() and "://" not in spec
        self.paced = self.is_file and not as_fast_as_possible
        self.loop = loop and self.is_file  # a file played again from the start, its clock going on
        self.skipped = 0
        self.fps = DEFAULT_FPS
        self._capture: cv2.VideoCapture | None = None
        self._index = 0

    def open(self) -> None:
        """Open the source.

        Raises:
            SourceError: missing file, or OpenCV cannot open it.
        """
        if self.is_file and not Path(self.spec).is_file():
            raise SourceError(f"no such video file: {self.spec}")
        capture = cv2.VideoCapture(int(self.spec) if self.spec.isdigit() else self.spec)
        if not capture.isOpened():
            capture.release()
            raise SourceError(f"OpenCV cannot open {self.spec!r}")
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0.0 < fps <= 1000.0 else DEFAULT_FPS
        self.fps /= self.every
        self._capture = capture

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def _read(self) -> tuple[float, npt.NDArray[np.uint8]] | None:
        """The next frame with its capture time (blocking), or None at the end."""
        if self._capture is None:
            self.open()
        assert self._capture is not None
        image = self._read_every(self._capture)
        if image is None and self.loop and self._index > 0:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            image = self._read_every(self._capture)
        if image is None:
            return None
        ts = self._index / self.fps if self.is_file else time.time()
        self._index += 1
        return ts, image

    def _read_every(self, capture: cv2.VideoCapture) -> npt.NDArray[np.uint8] | None:
        """Skip ``every - 1`` frames, then read one; None at the end."""
        for _ in range(self.every - 1):
            if not capture.grab():
                return None
        ok, image = capture.read()
        return np.asarray(image, dtype=np.uint8) if ok and image is not None else None

    def _next(self, not_before: float | None) -> EncodedFrame | None:
        """Read (skipping frames older than ``not_before`` video seconds) and encode one frame."""
        while True:
            read = self._read()
            if read is None:
                return None
            ts, image = read
            if not_before is not None and ts < not_before:
                self.skipped += 1
                continue
            return EncodedFrame(ts, jpeg_encode(image, self.jpeg_quality, self.max_width))

    async def frames(self) -> AsyncIterator[EncodedFrame]:
        """The source's frames until it ends (a file) or fails; paced as the module doc says."""
        loop = asyncio.get_running_loop()
        started: float | None = None
        period = 1.0 / self.fps
        try:
            while True:
                not_before = None
                if self.paced and started is not None:
                    not_before = loop.time() - started - period  # frames already a period late
                frame = await asyncio.to_thread(self._next, not_before)
                if frame is None:
                    return
                if self.paced:
                    if started is None:
                        started = loop.time() - frame.capture_ts
                    delay = started + frame.capture_ts - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                yield frame
        finally:
            await asyncio.to_thread(self.close)
