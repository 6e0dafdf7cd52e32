"""Finding and reading the videos and images the command line analyses.

Everything is decoded with OpenCV into BGR ``Frame`` objects, optionally downscaled to
a maximum width so that a 4K clip is analysed at a size the pose backends handle well.
A file that cannot be read raises ``MediaError`` naming the file and the reason, so a
batch can report it and go on with the next one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from pose_analyzer.cuts import cut_sample
from pose_analyzer.types import Frame

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"})
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})

Image = npt.NDArray[np.uint8]

# Containers often declare no frame rate (or a nonsense one); timestamps then assume this.
DEFAULT_FPS = 30.0


class MediaKind(StrEnum):
    VIDEO = "video"
    IMAGE = "image"


class MediaError(ValueError):
    """A file is not a video or image we can read; ``reason`` says why, for the user."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """What ``probe`` learned about a readable file.

    ``width``/``height`` are the source size; ``frame_count`` is what the container
    declares (1 for an image; it may be 0 or wrong for some streams).
    """

    path: Path
    kind: MediaKind
    width: int
    height: int
    fps: float
    frame_count: int


def media_kind(path: Path) -> MediaKind | None:
    """The kind of media a file name suggests, or None when the suffix is neither."""
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return MediaKind.VIDEO
    if suffix in IMAGE_SUFFIXES:
        return MediaKind.IMAGE
    return None


def discover(path: Path) -> list[Path]:
    """The files to analyse: ``path`` itself, or the visible files directly inside a folder.

    Files of every suffix are returned from a folder (sorted by name) so that ``probe``
    can report the ones that are not media instead of hiding them.

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    return [path]


def probe(path: Path) -> MediaInfo:
    """Open a file far enough to know it is a readable video or image.

    Raises:
        MediaError: unknown suffix, or OpenCV cannot open or decode the file.
    """
    kind = media_kind(path)
    if kind is None:
        raise MediaError(path, f"not a video or image (unsupported suffix {path.suffix or '<none>'!r})")
    if kind is MediaKind.IMAGE:
        image = read_image(path)
        return MediaInfo(path, kind, image.shape[1], image.shape[0], 0.0, 1)
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise MediaError(path, "cannot open video (corrupt, truncated or unsupported codec)")
        ok, first = capture.read()
        if not ok or first is None:
            raise MediaError(path, "video opens but no frame can be decoded (corrupt or empty)")
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        return MediaInfo(
            path,
            kind,
            first.shape[1],
            first.shape[0],
            fps if 0.0 < fps < 1000.0 else DEFAULT_FPS,
            max(count, 0),
        )
    finally:
        capture.release()


def read_image(path: Path) -> Image:
    """Decode an image file to BGR uint8.

    Raises:
        MediaError: the file cannot be read or is not a decodable image.
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise MediaError(path, f"cannot read file ({exc.strerror or exc})") from exc
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise MediaError(path, "cannot decode image (corrupt or unsupported format)")
    return np.asarray(image, dtype=np.uint8)


def analysed_size(width: int, height: int, max_width: int | None) -> tuple[int, int]:
    """The frame size after downscaling to at most ``max_width`` (aspect kept, never upscaled)."""
    if max_width is None or width <= max_width:
        return width, height
    if max_width < 16:
        raise ValueError(f"max_width must be at least 16 pixels, got {max_width}")
    return max_width, max(1, round(height * max_width / width))


def _fit(image: Image, size: tuple[int, int]) -> Image:
    if (image.shape[1], image.shape[0]) == size:
        return image
    return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)


def iter_frames(info: MediaInfo, max_width: int | None = None, every: int = 1) -> Iterator[Frame]:
    """Yield every ``every``-th frame of a probed file, downscaled to ``max_width``.

    ``Frame.index`` is the frame's position in the file and its timestamp
    ``index / fps`` seconds (0.0 for an image): decoder-reported times are unreliable
    for some containers, and the engine needs them monotonic.  Skipped frames are only
    grabbed, not converted, which is cheaper than reading them.

    Raises:
        ValueError: ``every`` is below 1.
        MediaError: the file can no longer be opened.
    """
    if every < 1:
        raise ValueError(f"every must be at least 1, got {every}")
    size = analysed_size(info.width, info.height, max_width)
    if info.kind is MediaKind.IMAGE:
        still = _fit(read_image(info.path), size)
        yield Frame(image=still, timestamp=0.0, index=0, cut_sample=cut_sample(still))
        return
    capture = cv2.VideoCapture(str(info.path))
    if not capture.isOpened():
        raise MediaError(info.path, "cannot open video (corrupt, truncated or unsupported codec)")
    try:
        index = 0
        while True:
            if index % every:
                if not capture.grab():
                    return
            else:
                ok, image = capture.read()
                if not ok or image is None:
                    return
                fitted = _fit(np.asarray(image, dtype=np.uint8), size)
                # The cut test's sample now, while the decoded image is in the CPU's caches.
                yield Frame(fitted, index / info.fps, index, cut_sample(fitted))
            index += 1
    finally:
        capture.release()


class FrameWriter:
    """Writes annotated frames: an mp4 (``mp4v``) for a video, or one image file.

    The video file is opened on the first frame, whose size it takes.  Use as a
    context manager (or call ``close``) so the mp4 gets its index written.
    """

    def __init__(self, path: Path, fps: float | None) -> None:
        """``fps=None`` writes a single image at ``path`` (format from its suffix)."""
        self.path = path
        self.fps = fps
        self.frames = 0
        self._video: cv2.VideoWriter | None = None

    def write(self, image: Image) -> None:
        """Append one BGR frame (or write the image).

        Raises:
            OSError: the file cannot be opened or written.
        """
        if self.fps is None:
            if not cv2.imwrite(str(self.path), image):
                raise OSError(f"cannot write image {self.path}")
        else:
            if self._video is None:
                fourcc = cv2.VideoWriter.fourcc(*"mp4v")
                self._video = cv2.VideoWriter(
                    str(self.path), fourcc, self.fps, (image.shape[1], image.shape[0])
                )
                if not self._video.isOpened():
                    raise OSError(f"cannot open {self.path} for writing (mp4v codec unavailable?)")
            self._video.write(image)
        self.frames += 1

    def close(self) -> None:
        if self._video is not None:
            self._video.release()
            self._video = None

    def __enter__(self) -> FrameWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
