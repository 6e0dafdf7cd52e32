"""Cut detection on real frames of the shared clips spliced together, and box jumps."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from pose_analyzer.cuts import HIST_THRESHOLD, CutSample, FrameCutDetector, box_jump, cut_sample, thumbnail
from pose_analyzer.exercises import RepCounter, load_exercise

Image = npt.NDArray[np.uint8]


def read_frames(path: Path, count: int, step: int = 2, start: int = 0) -> list[Image]:
    capture = cv2.VideoCapture(str(path))
    frames: list[Image] = []
    index = 0
    try:
        while len(frames) < count:
            ok, image = capture.read()
            if not ok:
                break
            if index >= start and (index - start) % step == 0:
                frames.append(image)
            index += 1
    finally:
        capture.release()
    assert len(frames) == count, f"{path.name}: {len(frames)} frames"
    return frames


@pytest.fixture(scope="module")
def clips(test_data: Path) -> dict[str, list[Image]]:
    videos = test_data / "videos"
    return {
        "pushup": read_frames(videos / "pushup_4reps.mp4", 40, start=60),
        "squat": read_frames(videos / "squat_8reps.mp4", 40),
        "curl": read_frames(videos / "curl_3reps_starts_midrep.mp4", 40),
        "people": read_frames(videos / "three_people_sports2d.mp4", 40),
    }


@pytest.mark.parametrize(("first", "second"), [("pushup", "squat"), ("squat", "curl"), ("curl", "people")])
def test_a_splice_of_two_clips_is_one_cut_at_the_join(
    clips: dict[str, list[Image]], first: str, second: str
) -> None:
    detector = FrameCutDetector()
    frames = clips[first] + clips[second]
    cuts = [i for i, frame in enumerate(frames) if detector.update(frame)]
    assert cuts == [len(clips[first])]


def test_motion_within_one_clip_is_not_a_cut(clips: dict[str, list[Image]]) -> None:
    for frames in clips.values():
        detector = FrameCutDetector()
        assert not any(detector.update(frame) for frame in frames)


def test_a_different_image_size_after_a_cut_is_handled(clips: dict[str, list[Image]]) -> None:
    detector = FrameCutDetector()
    small = cv2.resize(clips["curl"][0], (320, 180))
    assert not detector.update(clips["pushup"][0])
    assert detector.update(small)
    detector.reset()
    assert not detector.update(clips["squat"][0])


def test_the_histogram_distance_is_that_of_normalised_histograms(clips: dict[str, list[Image]]) -> None:
    """The detector compares raw hue-saturation counts; the distance is the one of the L1-normalised
    histograms (Bhattacharyya divides by the sums itself).  Normalising scales every term by
    2^-12 exactly and the detector computes OpenCV's terms (exact products, correctly rounded
    roots), so only the summation order (numpy's, not OpenCV's) tells them apart: two orders of a
    sum of n = 128 nonnegative terms differ by at most (n - 1) eps of the sum, here of the
    coefficient c <= 1, and the distance sqrt(1 - c) turns an error e of c into at most e / (2 d)
    (plus an eps for the root's own rounding)."""

    def histogram(image: Image) -> npt.NDArray[np.float32]:
        thumb = cv2.resize(image, (64, 64), interpolation=cv2.INTER_NEAREST)
        hist = cv2.calcHist([cv2.cvtColor(thumb, cv2.COLOR_BGR2HSV)], [0, 1], None, [16, 8], [0, 180, 0, 256])
        return cv2.normalize(hist, hist, 1.0, 0.0, cv2.NORM_L1)

    frames = clips["squat"][:6] + clips["people"][:6]
    detector = FrameCutDetector()
    detector.score(frames[0])
    distances = []
    for previous, image in itertools.pairwise(frames):
        expected = cv2.compareHist(histogram(previous), histogram(image), cv2.HISTCMP_BHATTACHARYYA)
        distances.append(detector.score(image).histogram)
        eps = np.finfo(np.float64).eps
        tolerance = 127 * eps / (2 * expected) + eps
        assert distances[-1] == pytest.approx(expected, rel=0, abs=tolerance)
    assert max(distances) > HIST_THRESHOLD > min(distances)  # the join, and motion within a clip


def test_the_grey_difference_is_opencvs_l1_norm(clips: dict[str, list[Image]]) -> None:
    """Integers all the way (sums of grey levels and of minima): equal to the norm, to the bit."""

    def grey(image: Image) -> Image:
        return cv2.cvtColor(thumbnail(image), cv2.COLOR_BGR2GRAY)

    frames = clips["squat"][:6] + clips["people"][:6]
    detector = FrameCutDetector()
    detector.score(frames[0])
    for previous, image in itertools.pairwise(frames):
        expected = cv2.norm(grey(previous), grey(image), cv2.NORM_L1) / (64 * 64 * 255.0)
        assert detector.score(image).pixels == expected


@pytest.mark.parametrize("size", [1, 7, 63, 64, 65, 100, 360, 480, 640, 1129, 1138, 1920])
def test_the_thumbnail_is_opencvs_nearest_neighbour_sample(size: int) -> None:
    rng = np.random.default_rng(size)
    for shape in ((size, 37, 3), (37, size, 3)):
        image = rng.integers(0, 256, size=shape, dtype=np.uint8)
        expected = cv2.resize(image, (64, 64), interpolation=cv2.INTER_NEAREST)
        np.testing.assert_array_equal(thumbnail(image), expected)


def test_a_sample_taken_at_decode_gives_the_same_cuts(clips: dict[str, list[Image]]) -> None:
    frames = clips["squat"][:5] + clips["curl"][:5]
    own, given, fast = FrameCutDetector(), FrameCutDetector(), FrameCutDetector()
    for image in frames:
        score = own.score(image)
        assert score == given.score(image, cut_sample(image))
        assert fast.update(image, cut_sample(image)) == score.cut
    # The given sample is the one compared: another clip's reads as a cut.
    assert given.score(frames[-1], cut_sample(clips["pushup"][0])).cut
    assert fast.update(frames[-1], cut_sample(clips["pushup"][0]))
    with pytest.raises(ValueError, match="thumbnail"):
        CutSample.of_thumbnail(thumbnail(frames[0])[:32])


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="uint8"):
        FrameCutDetector().update(np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(ValueError, match="hist_threshold"):
        FrameCutDetector(hist_threshold=0)
    with pytest.raises(ValueError, match="x2 > x1"):
        box_jump((0, 0, 10, 10), (5, 5, 5, 20))


def test_box_jump() -> None:
    box = (100.0, 100.0, 200.0, 400.0)  # diagonal about 316 px
    assert not box_jump(box, (130.0, 110.0, 230.0, 410.0))  # walking: 32 px
    assert box_jump(box, (400.0, 100.0, 500.0, 400.0))  # moved 300 px in one frame
    assert box_jump(box, (120.0, 200.0, 170.0, 350.0))  # half the height: a zoom or another shot
    assert not box_jump(box, (100.0, 150.0, 200.0, 400.0))  # crouching: 5/6 of the height


def test_a_detected_cut_keeps_the_counter_from_joining_two_shots(clips: dict[str, list[Image]]) -> None:
    """Shot A ends at the bottom of a push-up, shot B (other frames) starts at the bottom
    of another: the detector finds the join and the counter does not count a rep across it."""
    fps = 15.0
    elbow = np.concatenate(
        [np.full(8, 170.0), np.linspace(170, 80, 10), np.linspace(80, 170, 10), np.full(12, 170.0)]
    )
    shot_a = clips["pushup"][:18]
    shot_b = clips["squat"][:22]
    frames = shot_a + shot_b
    counts = {}
    for detect in (False, True):
        detector = FrameCutDetector()
        counter = RepCounter(load_exercise("push_up"))
        for i, (frame, angle) in enumerate(zip(frames, elbow, strict=True)):
            t = i / fps
            if detect and detector.update(frame):
                counter.mark_cut(t)
            counter.update(t, {"left_elbow": float(angle), "right_elbow": float(angle), "trunk_lean": 85.0})
        counts[detect] = counter.count
    assert counts == {False: 1, True: 0}  # joined into a rep unless the cut is found
    assert [r.reason for r in counter.rejected] == ["cut"]
