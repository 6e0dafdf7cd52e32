"""What an image file says about itself, read before anything is decoded.

A 1 MB PNG can declare 20000 x 20000 pixels, and decoding it takes 1.2 GB, so the declared
size is read from the header (PNG ``IHDR``, JPEG start-of-frame) and checked against a limit
first.  A JPEG cut short with an end marker appended decodes without error (libjpeg fills the
missing blocks with grey and only warns on stderr), so ``jpeg_is_complete`` finds out whether
the compressed data really covers the whole image.  Nothing here knows FastAPI.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from PIL import Image

from pose_analyzer.streaming.errors import UnsupportedFrameError

# 4096 x 4096: every 4K camera (3840 x 2160, 4096 x 2160) and 12-16 MP phone photos fit; a
# decoded image of this size takes 48 MiB.
DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096
# The highest limit that may be configured: below Pillow's decompression-bomb warning (89 MP),
# which ``jpeg_is_complete`` would otherwise raise.
MAX_IMAGE_PIXELS_CEILING = 64 * 1024 * 1024

JPEG_START = b"\xff\xd8\xff"
JPEG_END = b"\xff\xd9"
PNG_START = b"\x89PNG\r\n\x1a\n"

# Start-of-frame markers (ITU T.81 table B.1): every SOFn except DHT (C4), JPG (C8) and DAC (CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Sequential scans: one pass over every block, so a 1/8-scale decode still reads all the data.
_SEQUENTIAL = frozenset({0xC0, 0xC1, 0xC9})
# Markers without a length field: TEM and the restart markers.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
# The end of a run of 0xFF (a marker's prefix and its fill bytes), found in C.
_NOT_FILL = re.compile(rb"[^\xff]")
# Real files have a few dozen segments before the frame header (APPn, DQT, DHT, COM).
_MAX_SEGMENTS = 1024
# Bytes put before the end marker to see whether the decoder reads them (0x5A: no 0xFF in it).
_PROBE = b"\x5a" * 64


class ImageTooLargeError(UnsupportedFrameError):
    """An image whose header declares more pixels than allowed (413 over HTTP, 1009 on a stream)."""

    status_code = 413
    close_code = 1009
    code = "image_too_large"
    metric_reason = "image_too_large"


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """What ``decode_frame`` accepts: at most ``max_pixels`` pixels, and (``verify_jpeg``) only
    JPEGs whose data covers the whole image (costs two 1/8-scale decodes per JPEG)."""

    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    verify_jpeg: bool = True


@dataclass(frozen=True, slots=True)
class ImageHeader:
    kind: Literal["jpeg", "png"]
    width: int
    height: int
    sequential: bool = True  # JPEG: a baseline/sequential scan (not progressive or lossless)

    @property
    def pixels(self) -> int:
        return self.width * self.height


def _u16(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 2], "big")


def _jpeg_header(data: bytes) -> ImageHeader:
    # Like libjpeg, skip stray bytes and fill bytes (0xFF runs) before each marker; the searches
    # run in C and the segment count is capped, so a 10 MB frame of tiny segments costs little.
    at = 2
    for _ in range(_MAX_SEGMENTS):
        fill = data.find(b"\xff", at)
        after = None if fill < 0 else _NOT_FILL.search(data, fill)
        if after is None:
            break
        at = after.start() - 1  # the last 0xFF; the marker code follows it
        marker = data[at + 1]
        if marker == 0x00 or marker in _STANDALONE:  # 0xFF00 is stuffed data, not a marker
            at += 2
            continue
        if marker in (0xD9, 0xDA) or at + 4 > len(data):
            break
        length = _u16(data, at + 2)
        if length < 2 or at + 2 + length > len(data):
            raise UnsupportedFrameError(
                "the image could not be decoded: malformed JPEG (a segment runs past the end)"
            )
        if marker in _SOF:
            if length < 8:
                raise UnsupportedFrameError(
                    "the image could not be decoded: malformed JPEG (short frame header)"
                )
            height, width = _u16(data, at + 5), _u16(data, at + 7)
            if width == 0 or height == 0:
                raise UnsupportedFrameError(
                    "the image could not be decoded: the JPEG frame header declares no size"
                )
            return ImageHeader("jpeg", width, height, marker in _SEQUENTIAL)
        at += 2 + length
    raise UnsupportedFrameError("the image could not be decoded: malformed JPEG (no frame header)")


def _png_header(data: bytes) -> ImageHeader:
    if len(data) < 24 or data[8:16] != b"\x00\x00\x00\x0dIHDR":
        raise UnsupportedFrameError("the image could not be decoded: malformed PNG (IHDR must come first)")
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if not (0 < width < 2**31 and 0 < height < 2**31):
        raise UnsupportedFrameError("the image could not be decoded: the PNG header declares an invalid size")
    return ImageHeader("png", width, height)


def read_header(data: bytes) -> ImageHeader:
    """The kind and declared size of a JPEG or PNG file, from its first bytes only.

    Raises:
        UnsupportedFrameError: neither JPEG nor PNG, or a malformed header.
    """
    if data.startswith(JPEG_START):
        return _jpeg_header(data)
    if data.startswith(PNG_START):
        return _png_header(data)
    raise UnsupportedFrameError("binary frames must be JPEG or PNG images")


def check_pixels(header: ImageHeader, max_pixels: int) -> None:
    """Raises ``ImageTooLargeError`` when the header declares more than ``max_pixels`` pixels."""
    if header.pixels > max_pixels:
        raise ImageTooLargeError(
            f"the image declares {header.width}x{header.height} pixels; "
            f"at most {max_pixels} pixels are accepted"
        )


def jpeg_is_complete(data: bytes, header: ImageHeader) -> bool:
    """Whether the JPEG's compressed data covers every block of the image.

    libjpeg stops reading when the last block is decoded and skips anything before the end
    marker, so bytes put there change nothing in a whole file; in a cut file the decoder is
    still short of data when it meets them and decodes them as blocks.  The file is decoded
    with and without those bytes and the two images compared.  A sequential JPEG is decoded at
    1/8 scale (all of its data, little of the arithmetic); progressive ones, whose later scans
    only refine detail, at full scale.  Pillow decodes here, not OpenCV: its libjpeg keeps the
    "extraneous bytes" warning of every whole file off stderr.
    """
    end = data.rfind(JPEG_END)
    if end < 0:
        return False
    probed = data[:end] + _PROBE + data[end:]
    try:
        plain = _decode_for_comparison(data, header)
        with_probe = _decode_for_comparison(probed, header)
    except (OSError, ValueError, Image.DecompressionBombError):
        return False
    return np.array_equal(plain, with_probe)


def _decode_for_comparison(data: bytes, header: ImageHeader) -> npt.NDArray[Any]:
    with Image.open(io.BytesIO(data), formats=["JPEG"]) as image:
        if header.sequential:
            image.draft(None, (max(1, header.width // 8), max(1, header.height // 8)))
        image.load()
        return np.asarray(image)
