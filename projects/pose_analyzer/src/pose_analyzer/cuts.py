"""Scene cuts and camera switches, so that nothing is joined across them.

Two cheap tests, both standalone (no FastAPI, no models):

- ``FrameCutDetector``: each frame against the previous one, on a 64x64 thumbnail: the
  Bhattacharyya distance of the hue-saturation histograms (the colours of the scene
  changed) or the mean absolute grey-level difference (the picture changed).  Either
  above its threshold is a cut.  The thumbnail is a nearest-neighbour sample of the
  frame: it reads 64 rows of it (the 128x128 sample averaged 2x2 that came before read
  twice the rows and cost 0.2-0.3 ms).  On the shared clips (every video under tests/data,
  at 640 wide and at full size), the largest values between frames of one clip, consecutive
  or every second one, are 0.31 (histogram) and 0.11 (grey level); between the first,
  middle or last frame of one clip and those of another, every pair is over at least one
  threshold.  The defaults sit between.
- ``CutSample``: what the test keeps of one frame (the thumbnail's hue-saturation counts and
  grey levels), taken where the frame is decoded (``Frame.cut_sample``): the image is still in
  the CPU's caches there and OpenCV has just run (the decode), whereas right after a pose
  model's inference the first OpenCV call alone cost about 0.035 ms, all four 0.08 ms (2 shared
  cores).  The comparison with the previous frame, the stream's state, stays in the engine, in
  five small numpy calls.
- ``box_jump``: a tracked person's box moving or changing size more than a body can in
  one frame (a camera switch that keeps the same colours, a re-framed shot).

Tell the rep counter with ``RepCounter.mark_cut(timestamp)``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

Box = tuple[float, float, float, float]

THUMB_SIZE = 64
_THUMB_SHAPE = (THUMB_SIZE, THUMB_SIZE, 3)
THUMB_PIXELS = THUMB_SIZE * THUMB_SIZE
HIST_THRESHOLD = 0.4
PIXEL_THRESHOLD = 0.15


@dataclass(frozen=True, slots=True)
class CutScore:
    """How different a frame is from the previous one: histogram distance in [0, 1],
    mean absolute grey-level difference in [0, 1]; ``cut`` when either is over its threshold."""

    histogram: float
    pixels: float
    cut: bool


@dataclass(frozen=True, slots=True)
class CutSample:
    """What the cut test keeps of one frame: the hue-saturation histogram of its thumbnail as
    counts (HS_BINS float64; every one of the THUMB_PIXELS pixels falls in one bin), its grey
    levels (THUMB_PIXELS int32, so that the comparison casts nothing) and their sum."""

    hist: npt.NDArray[np.float64]
    grey: npt.NDArray[np.int32]
    grey_sum: int

    @classmethod
    def of_thumbnail(cls, thumb: npt.NDArray[np.uint8]) -> CutSample:
        """The sample of a ``thumbnail``.

        Raises:
            ValueError: ``thumb`` is not a (64, 64, 3) uint8 thumbnail.
        """
        if thumb.dtype != np.uint8 or thumb.shape != _THUMB_SHAPE:
            raise ValueError(f"expected a {_THUMB_SHAPE} uint8 thumbnail, got {thumb.dtype} {thumb.shape}")
        hsv = cv2.cvtColor(thumb, cv2.COLOR_BGR2HSV)
        hist = cv2.calcHist([hsv], [0, 1], None, [16, 8], [0, 180, 0, 256])
        grey = cv2.cvtColor(thumb, cv2.COLOR_BGR2GRAY).ravel().astype(np.int32)
        return cls(hist.ravel().astype(np.float64), grey, int(grey.sum()))


def cut_sample(image: npt.NDArray[np.uint8]) -> CutSample:
    """The cut test's sample of an (H, W, 3) BGR uint8 image: ``CutSample.of_thumbnail(thumbnail(image))``."""
    return CutSample.of_thumbnail(thumbnail(image))


class FrameCutDetector:
    """Finds cuts in one stream of frames (BGR uint8, as OpenCV reads them), in order.

    Raises:
        ValueError: a threshold outside (0, 1].
    """

    def __init__(
        self, hist_threshold: float = HIST_THRESHOLD, pixel_threshold: float = PIXEL_THRESHOLD
    ) -> None:
        for label, value in (("hist_threshold", hist_threshold), ("pixel_threshold", pixel_threshold)):
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{label} must be in (0, 1], got {value}")
        self.hist_threshold = hist_threshold
        self.pixel_threshold = pixel_threshold
        self._previous: CutSample | None = None

    def reset(self) -> None:
        """Forget the previous frame (the next frame starts a new stream)."""
        self._previous = None

    def score(self, image: npt.NDArray[np.uint8], sample: CutSample | None = None) -> CutScore:
        """Compare ``image`` with the previous frame; the first frame is never a cut.

        ``sample`` is ``cut_sample(image)`` when the caller took it already (``Frame.cut_sample``).

        Raises:
            ValueError: not an (H, W, 3) uint8 image.
        """
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
            raise ValueError(f"expected an (H, W, 3) uint8 BGR image, got {image.dtype} {image.shape}")
        if sample is None:
            sample = cut_sample(image)
        previous, self._previous = self._previous, sample
        if previous is None:
            return CutScore(0.0, 0.0, False)
        h, p = _distances(previous, sample)
        return CutScore(h, p, h > self.hist_threshold or p > self.pixel_threshold)

    def update(self, image: npt.NDArray[np.uint8], sample: CutSample | None = None) -> bool:
        """True when a cut happened between the previous frame and ``image``: ``score(image, sample).cut``,
        the engine's path, per frame; given a ``sample``, ``image`` is not looked at (nor checked).

        Raises:
            ValueError: no ``sample`` and not an (H, W, 3) uint8 image.
        """
        if sample is None:
            return self.score(image).cut
        previous, self._previous = self._previous, sample
        if previous is None:
            return False
        h, p = _distances(previous, sample)
        return h > self.hist_threshold or p > self.pixel_threshold


def _distances(previous: CutSample, current: CutSample) -> tuple[float, float]:
    """The histogram distance and the grey-level difference of two frames' samples, each in [0, 1]."""
    # OpenCV's Bhattacharyya distance (``compareHist``): sqrt(1 - sum(sqrt(a * b)) / sqrt(sum(a) *
    # sum(b))), where both sums are the pixel count 64 * 64 = 2^12: dividing by it is exact, as
    # normalising the histograms first would be.  The terms are OpenCV's (each product of two
    # counts is exact, its root correctly rounded); only the order of the sum differs.
    coefficient = float(np.sqrt(previous.hist * current.hist).sum()) / THUMB_PIXELS
    # Mean absolute grey-level difference: sum |a - b| = sum a + sum b - 2 sum min(a, b), in integers
    # (the L1 norm of the difference, exactly; one numpy call fewer than |a - b|).
    l1 = previous.grey_sum + current.grey_sum - 2 * int(np.minimum(previous.grey, current.grey).sum())
    return math.sqrt(max(1.0 - coefficient, 0.0)), l1 / (THUMB_PIXELS * 255.0)


def thumbnail(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """The cut test's THUMB_SIZE x THUMB_SIZE nearest-neighbour sample of an (H, W, C) image: the
    pixels ``cv2.resize(image, (64, 64), interpolation=cv2.INTER_NEAREST)`` picks, to the byte.

    Two ``take`` calls on cached row and column indices (about 0.07 ms after an inference has
    evicted the CPU's caches, where ``cv2.resize`` took about 0.1 ms for the same 64 rows).
    Taken where a frame is decoded (``cut_sample``), it reads the image while it is still in the
    caches.
    """
    rows, columns = _sample_indices(image.shape[0], image.shape[1])
    return image.take(rows, axis=0).take(columns, axis=1)


@functools.lru_cache(maxsize=16)
def _sample_indices(height: int, width: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    return _nearest(height), _nearest(width)


def _nearest(size: int) -> npt.NDArray[np.intp]:
    """OpenCV's INTER_NEAREST source index of each of THUMB_SIZE outputs from ``size`` inputs
    (``resizeNN``: ``min(floor(i * (1 / (THUMB_SIZE / size))), size - 1)``, in double as there)."""
    inverse_scale = 1.0 / (THUMB_SIZE / size)
    indices = np.array([min(math.floor(i * inverse_scale), size - 1) for i in range(THUMB_SIZE)], np.intp)
    indices.flags.writeable = False
    return indices


def box_jump(previous: Box, current: Box, max_shift: float = 0.5, max_scale: float = 1.5) -> bool:
    """Whether a person's box jumped between two consecutive frames.

    A jump: the centre moved more than ``max_shift`` times the previous box's diagonal,
    or the box's height grew or shrank by more than ``max_scale`` times.  A person
    walking or jumping moves well under half a body diagonal per frame at 10 fps and
    more; a camera switch or a re-framed shot moves the box at once.

    Raises:
        ValueError: a box with non-positive width or height, or non-finite coordinates.
    """
    for box in (previous, current):
        x1, y1, x2, y2 = box
        # The sum is finite only when every coordinate is (per frame: one call, not four).
        if not math.isfinite(x1 + y1 + x2 + y2) or x2 <= x1 or y2 <= y1:
            raise ValueError(f"a box is (x1, y1, x2, y2) with x2 > x1 and y2 > y1, got {box}")
    px1, py1, px2, py2 = previous
    cx1, cy1, cx2, cy2 = current
    diagonal = math.hypot(px2 - px1, py2 - py1)
    shift = math.hypot((cx1 + cx2 - px1 - px2) / 2, (cy1 + cy2 - py1 - py2) / 2)
    scale = (cy2 - cy1) / (py2 - py1)
    return shift > max_shift * diagonal or not 1 / max_scale <= scale <= max_scale
