"""Turn a binary frame message into a BGR image, refusing what is not a whole JPEG or PNG."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from pose_analyzer.streaming.errors import UnsupportedFrameError

_JPEG_START = b"\xff\xd8\xff"
_JPEG_END = b"\xff\xd9"
_PNG_START = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"IEND"


def decode_frame(data: bytes) -> npt.NDArray[np.uint8]:
    """Decode a JPEG or PNG file into an (H, W, 3) uint8 BGR image.

    OpenCV decodes a truncated JPEG into a partly grey image with only a warning on
    stderr, so the end markers are checked first: a cut-off file is refused, not analysed.

    Raises:
        UnsupportedFrameError: not a JPEG/PNG, truncated, or not decodable.
    """
    if data.startswith(_JPEG_START):
        # Some encoders pad after the end-of-image marker; look for it near the end.
        if _JPEG_END not in data[-32:]:
            raise UnsupportedFrameError("truncated JPEG: no end-of-image marker")
    elif data.startswith(_PNG_START):
        if _PNG_END not in data[-12:]:
            raise UnsupportedFrameError("truncated PNG: no IEND chunk")
    else:
        raise UnsupportedFrameError("binary frames must be JPEG or PNG images")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise UnsupportedFrameError("the image could not be decoded")
    return np.ascontiguousarray(image, dtype=np.uint8)
