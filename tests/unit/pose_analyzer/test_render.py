"""Overlays: bones and keypoints land where the keypoints are; unseen ones are not drawn."""

from __future__ import annotations

import numpy as np
import pytest

from pose_analyzer.keypoints import Keypoint, empty_keypoints
from pose_analyzer.render import (
    KEYPOINT_COLOR,
    OverlayStyle,
    draw_analysis,
    track_color,
    visible_keypoints,
)
from pose_analyzer.types import FrameAnalysis, Person, PersonAnalysis, RepRecord

H, W = 480, 640
# Far from the top-left panel, so panel pixels never mix with the skeleton's.
SHOULDER = (400.0, 200.0)
ELBOW = (400.0, 320.0)
NO_ANGLES = OverlayStyle(show_angles=False)


def _analysis(points: dict[Keypoint, tuple[float, float, float]], track_id: int | None = 3) -> FrameAnalysis:
    keypoints = empty_keypoints()
    for k, value in points.items():
        keypoints[k] = value
    person = Person(keypoints=keypoints, box=(0.0, 0.0, 10.0, 10.0), score=0.9, track_id=track_id)
    return FrameAnalysis(
        index=0, timestamp=0.0, width=W, height=H, people=[PersonAnalysis(person=person, angles={})]
    )


def _black() -> np.ndarray:
    return np.zeros((H, W, 3), dtype=np.uint8)


def _drawn(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Mask of pixels the overlay changed, with the top-left panel blanked out."""
    changed = np.any(before != after, axis=2)
    changed[:120, :320] = False
    return changed


def test_bone_is_drawn_between_its_keypoints_in_the_track_colour() -> None:
    analysis = _analysis({Keypoint.LEFT_SHOULDER: (*SHOULDER, 0.9), Keypoint.LEFT_ELBOW: (*ELBOW, 0.9)})
    out = draw_analysis(_black(), analysis, style=NO_ANGLES)
    middle = out[260, 400]
    assert tuple(int(c) for c in middle) == track_color(3)
    # The keypoint centres are filled white.
    assert tuple(int(c) for c in out[200, 400]) == KEYPOINT_COLOR
    assert tuple(int(c) for c in out[320, 400]) == KEYPOINT_COLOR
    # Nothing drawn far from the bone.
    changed = _drawn(_black(), out)
    ys, xs = np.nonzero(changed)
    assert xs.min() >= 390
    assert xs.max() <= 410
    assert ys.min() >= 190
    assert ys.max() <= 330


def test_input_image_is_not_modified() -> None:
    image = _black()
    analysis = _analysis({Keypoint.LEFT_SHOULDER: (*SHOULDER, 0.9), Keypoint.LEFT_ELBOW: (*ELBOW, 0.9)})
    draw_analysis(image, analysis)
    assert not image.any()


def test_nan_and_low_confidence_keypoints_and_their_bones_are_not_drawn() -> None:
    analysis = _analysis(
        {
            Keypoint.LEFT_SHOULDER: (*SHOULDER, 0.9),
            Keypoint.LEFT_ELBOW: (np.nan, np.nan, 0.9),  # NaN: no line to (0, 0)
            Keypoint.RIGHT_SHOULDER: (500.0, 200.0, 0.05),  # under min_confidence
        }
    )
    out = draw_analysis(_black(), analysis, style=NO_ANGLES)
    ys, xs = np.nonzero(_drawn(_black(), out))
    # Only the lone left-shoulder dot remains.
    assert len(xs) > 0
    assert np.abs(xs - SHOULDER[0]).max() <= 6
    assert np.abs(ys - SHOULDER[1]).max() <= 6
    assert not out[200, 450].any()


def test_visible_keypoints_mask() -> None:
    keypoints = empty_keypoints()
    keypoints[0] = (1.0, 2.0, 0.9)
    keypoints[1] = (1.0, 2.0, 0.1)
    keypoints[2] = (np.nan, 2.0, 0.9)
    mask = visible_keypoints(keypoints, 0.3)
    assert mask.tolist()[:4] == [True, False, False, False]
    assert mask.sum() == 1


def test_angles_are_written_next_to_their_joint() -> None:
    analysis = _analysis({Keypoint.LEFT_SHOULDER: (*SHOULDER, 0.9), Keypoint.LEFT_ELBOW: (*ELBOW, 0.9)})
    analysis.people[0].angles = {"left_elbow": 93.0, "trunk_lean": 12.0, "left_knee": float("nan")}
    without = draw_analysis(_black(), analysis, style=NO_ANGLES)
    with_angles = draw_analysis(_black(), analysis)
    # Text sits up and to the right of the elbow, where the plain skeleton leaves black.
    region = (slice(280, 316), slice(406, 460))
    assert not without[region].any()
    # Anti-aliased white text: bright (not exactly 255) pixels.
    assert (with_angles[region] > 200).all(axis=2).sum() > 20


def test_panel_shows_people_and_changes_with_rep_state() -> None:
    analysis = _analysis({Keypoint.LEFT_SHOULDER: (*SHOULDER, 0.9)})
    before = draw_analysis(_black(), analysis)
    analysis.people[0].rep_count = 1
    analysis.people[0].last_rep = RepRecord("squat", 1, 0.0, 1.0, 80.0, 1.0, 87.0)
    after = draw_analysis(_black(), analysis, exercise="squat")
    panel = (slice(0, 80), slice(0, 320))
    assert before[panel].any()
    assert not np.array_equal(before[panel], after[panel])


def test_untracked_people_are_grey_and_tracks_get_distinct_colours() -> None:
    assert track_color(None) == (200, 200, 200)
    assert len({track_color(i) for i in range(6)}) == 6


def test_rejects_non_bgr_images() -> None:
    analysis = _analysis({})
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        draw_analysis(np.zeros((H, W), dtype=np.uint8), analysis)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        draw_analysis(np.zeros((H, W, 3), dtype=np.float32), analysis)
