"""Turn a binary frame message into a BGR image, refusing what is not a whole JPEG or PNG."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from pose_analyzer.streaming.errors import UnsupportedFrameError
from pose_analyzer.streaming.image_header import (
    JPEG_END,
    DecodeLimits,
    check_pixels,
    jpeg_is_complete,
    read_header,
)

_PNG_END = b"IEND"


_DEFAULT_LIMITS = DecodeLimits()


def decode_frame(data: bytes, limits: DecodeLimits = _DEFAULT_LIMITS) -> npt.NDArray[np.uint8]:
    """Decode a JPEG or PNG file into an (H, W, 3) uint8 BGR image.

    The declared size is checked from the header before anything is decoded.  OpenCV decodes
    a truncated JPEG into a partly grey image with only a warning on stderr, so a JPEG must
    end with its end-of-image marker and, unless ``limits.verify_jpeg`` is off, its compressed
    data must cover the whole image (see ``jpeg_is_complete``); libpng refuses a PNG whose
    image data is cut short.

    Raises:
        ImageTooLargeError: the header declares more than ``limits.max_pixels`` pixels.
        UnsupportedFrameError: not a JPEG/PNG, truncated, or not decodable.
    """
    header = read_header(data)
    check_pixels(header, limits.max_pixels)
    if header.kind == "jpeg":
        # Some encoders pad after the end-of-image marker; look for it near the end.
        if JPEG_END not in data[-32:]:
            raise UnsupportedFrameError("truncated JPEG: no end-of-image marker")
        if limits.verify_jpeg and not jpeg_is_complete(data, header):
            raise UnsupportedFrameError("truncated JPEG: the image data ends before the last block")
    elif _PNG_END not in data[-12:]:
        raise UnsupportedFrameError("truncated PNG: no IEND chunk")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise UnsupportedFrameError("the image could not be decoded")
    return np.ascontiguousarray(image, dtype=np.uint8)
