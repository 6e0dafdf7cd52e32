"""Input bounds at decode: sizes read from real headers, a decompression bomb, truncated JPEGs."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from pose_analyzer.streaming.decode import decode_frame
from pose_analyzer.streaming.errors import UnsupportedFrameError
from pose_analyzer.streaming.image_header import (
    DecodeLimits,
    ImageTooLargeError,
    read_header,
)

ROOT = Path(__file__).resolve().parents[3]
IMAGES = ROOT / "tests" / "data" / "images"


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bomb_png(width: int = 20000, height: int = 20000) -> bytes:
    """A real, complete PNG of ``width`` x ``height`` black pixels (1-bit grey: about 50 KB).

    OpenCV decodes any PNG to 3 channels, so decoding it takes ``width * height * 3`` bytes.
    """
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


def jpeg(path: Path, progressive: bool = False) -> tuple[np.ndarray, bytes]:  # type: ignore[type-arg]
    image = cv2.imread(str(path))
    flags = [cv2.IMWRITE_JPEG_QUALITY, 90, cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)]
    return image, cv2.imencode(".jpg", image, flags)[1].tobytes()


@pytest.mark.parametrize("name", ["bus.jpg", "zidane.jpg", "mediapipe_pose_test_image.jpg"])
def test_header_sizes_agree_with_the_decoder(name: str) -> None:
    data = (IMAGES / name).read_bytes()
    header = read_header(data)
    height, width = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape[:2]
    assert (header.kind, header.width, header.height) == ("jpeg", width, height)
    image, progressive = jpeg(IMAGES / name, progressive=True)
    assert read_header(progressive).sequential is False
    png = cv2.imencode(".png", image[:37, :91])[1].tobytes()
    assert (read_header(png).width, read_header(png).height) == (91, 37)


def test_the_pixel_limit_is_inclusive() -> None:
    image = cv2.imread(str(IMAGES / "zidane.jpg"))
    data = cv2.imencode(".jpg", image)[1].tobytes()
    pixels = image.shape[0] * image.shape[1]
    assert decode_frame(data, DecodeLimits(max_pixels=pixels)).shape == image.shape
    with pytest.raises(ImageTooLargeError, match=f"{image.shape[1]}x{image.shape[0]}") as err:
        decode_frame(data, DecodeLimits(max_pixels=pixels - 1))
    assert (err.value.close_code, err.value.status_code) == (1009, 413)


def test_a_jpeg_whose_frame_header_lies_is_refused_before_decoding() -> None:
    data = bytearray((IMAGES / "bus.jpg").read_bytes())
    header = read_header(bytes(data))
    sof = next(i for i in range(2, len(data) - 9) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC2))
    assert struct.unpack(">HH", data[sof + 5 : sof + 9]) == (header.height, header.width)
    data[sof + 5 : sof + 9] = struct.pack(">HH", 60000, 60000)
    with pytest.raises(ImageTooLargeError, match="60000x60000"):
        decode_frame(bytes(data))


# Run in a fresh interpreter so that ru_maxrss (the peak) belongs to this decode alone.
_MEASURE = """
import json, resource, sys
from pose_analyzer.streaming.decode import decode_frame
bomb, small = open(sys.argv[1], 'rb').read(), open(sys.argv[2], 'rb').read()
decode_frame(small)  # libraries loaded and warm before the baseline
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    decode_frame(bomb)
    outcome = 'decoded'
except Exception as exc:
    outcome = type(exc).__name__ + ': ' + str(exc)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({'outcome': outcome, 'peak_growth_mib': (after - before) / 1024}))
"""


def test_a_png_declaring_20000x20000_is_refused_without_the_memory(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png())
    assert bomb.stat().st_size < 200_000, "a small file"
    assert read_header(bomb.read_bytes()).pixels == 400_000_000
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(bomb), str(IMAGES / "bus.jpg")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["outcome"].startswith("ImageTooLargeError: the image declares 20000x20000 pixels")
    # Decoding would take 20000 * 20000 * 3 bytes = 1144 MiB; the refusal reads 24 header bytes.
    assert result["peak_growth_mib"] < 16, result


def cut_with_end_marker(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)] + b"\xff\xd9"


@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("fraction", [1 / 3, 0.5, 0.9, 0.99])
def test_a_cut_jpeg_with_an_end_marker_appended_is_refused(progressive: bool, fraction: float) -> None:
    _, whole = jpeg(IMAGES / "bus.jpg", progressive)
    cut = cut_with_end_marker(whole, fraction)
    assert cv2.imdecode(np.frombuffer(cut, np.uint8), cv2.IMREAD_COLOR) is not None, "OpenCV takes it"
    with pytest.raises(UnsupportedFrameError, match="truncated JPEG") as err:
        decode_frame(cut)
    assert err.value.close_code == 1003
    assert decode_frame(cut, DecodeLimits(verify_jpeg=False)).shape[:2] == (1080, 810), "the check can be off"


@pytest.mark.parametrize("name", ["bus.jpg", "zidane.jpg", "mediapipe_pose_test_image.jpg"])
def test_whole_jpegs_pass_the_check_unchanged(name: str) -> None:
    original = (IMAGES / name).read_bytes()
    expected = cv2.imdecode(np.frombuffer(original, np.uint8), cv2.IMREAD_COLOR)
    _, progressive = jpeg(IMAGES / name, progressive=True)
    padded = original + b"\x00" * 16  # some encoders pad after the end marker
    for data in (original, progressive, padded):
        decoded = decode_frame(data)
        assert decoded.shape == expected.shape
    assert np.array_equal(decode_frame(original), expected)


def test_the_header_walk_tolerates_what_libjpeg_tolerates() -> None:
    data = (IMAGES / "zidane.jpg").read_bytes()
    app0_end = 4 + int.from_bytes(data[4:6], "big")
    odd = data[:app0_end] + b"\x00\x13" + b"\xff" * 5 + data[app0_end:]  # stray bytes, fill bytes
    assert cv2.imdecode(np.frombuffer(odd, np.uint8), cv2.IMREAD_COLOR).shape == (720, 1280, 3)
    header = read_header(odd)
    assert (header.width, header.height) == (1280, 720)


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xd8\xff" + b"\xff" * 10_000_000,
        b"\xff\xd8" + b"\xff\xe0\x00\x02" * 2_500_000,
        b"\xff\xd8" + b"\xff\x00" * 5_000_000,
        b"\xff\xd8\xff" + bytes(10_000_000),
        b"\xff\xd8\xff\xc0\x00\x11\x08\x00\x00\x00\x10" + bytes(9),
        b"\xff\xd8\xff\xe0\xff\xff",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\xff\xff\xff\xff\x00\x00\x00\x01",
    ],
    ids=[
        "fill-run",
        "tiny-segments",
        "stuffed-pairs",
        "zeros",
        "zero-height",
        "segment-past-end",
        "png-size",
    ],
)
def test_hostile_headers_are_refused(data: bytes) -> None:
    with pytest.raises(UnsupportedFrameError, match="could not be decoded"):
        read_header(data)
