"""Trackers on synthetic boxes: crossing paths, leaving and coming back, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from pose_analyzer.detection.registry import create_tracker
from pose_analyzer.keypoints import empty_keypoints
from pose_analyzer.tracking import IoUTracker, PoseTracker, SinglePersonTracker, Tracker, box_iou
from pose_analyzer.types import Person

FPS = 30.0


def _person(x: float, y: float, w: float = 100.0, h: float = 200.0) -> Person:
    return Person(keypoints=empty_keypoints(), box=(x, y, x + w, y + h), score=0.9)


def test_box_iou() -> None:
    a = np.array([0.0, 0.0, 10.0, 10.0])
    assert box_iou(a, a) == pytest.approx(1.0)
    assert box_iou(a, np.array([5.0, 0.0, 15.0, 10.0])) == pytest.approx(50 / 150)
    assert box_iou(a, np.array([20.0, 20.0, 30.0, 30.0])) == 0.0


@pytest.mark.parametrize("tracker", [IoUTracker(), PoseTracker()], ids=["iou", "pose"])
def test_people_crossing_with_partial_overlap_keep_their_ids(tracker: Tracker) -> None:
    # A walks right, B walks left a little lower (in front): their boxes overlap while passing.
    ids_a, ids_b = set(), set()
    for frame in range(25):
        a, b = _person(20.0 * frame, 100.0), _person(480.0 - 20.0 * frame, 160.0)
        tracker.update([b, a] if frame % 2 else [a, b], frame / FPS)
        ids_a.add(a.track_id)
        ids_b.add(b.track_id)

    assert len(ids_a) == 1
    assert len(ids_b) == 1
    assert ids_a != ids_b


def test_pose_tracker_follows_motion_through_a_full_overlap() -> None:
    # Same height: the boxes coincide at frame 12; velocity tells who is who afterwards.
    tracker = PoseTracker()
    right_ids, left_ids = [], []
    for frame in range(25):
        right, left = _person(20.0 * frame, 100.0), _person(480.0 - 20.0 * frame, 100.0)
        tracker.update([right, left], frame / FPS)
        if frame != 12:
            right_ids.append(right.track_id)
            left_ids.append(left.track_id)

    assert len(set(right_ids)) == 1
    assert len(set(left_ids)) == 1
    assert right_ids[0] != left_ids[0]


def _leave_and_return(tracker: Tracker, gap_s: float) -> tuple[int | None, int | None]:
    first = None
    for frame in range(10):
        person = _person(100.0, 100.0)
        tracker.update([person], frame / FPS)
        first = person.track_id
    last_seen = 9 / FPS
    for frame in range(1, int(gap_s * FPS)):
        tracker.update([], last_seen + frame / FPS)
    back = _person(100.0, 100.0)
    tracker.update([back], last_seen + gap_s)
    return first, back.track_id


@pytest.mark.parametrize("make", [IoUTracker, PoseTracker], ids=["iou", "pose"])
def test_a_person_back_after_max_age_gets_a_new_id(make: type[IoUTracker] | type[PoseTracker]) -> None:
    before, after = _leave_and_return(make(max_age_s=1.0), gap_s=1.5)
    assert before is not None
    assert after is not None
    assert after != before


@pytest.mark.parametrize("make", [IoUTracker, PoseTracker], ids=["iou", "pose"])
def test_a_person_back_within_max_age_keeps_the_id(make: type[IoUTracker] | type[PoseTracker]) -> None:
    before, after = _leave_and_return(make(max_age_s=1.0), gap_s=0.5)
    assert after == before


def test_new_people_get_new_ids_and_ids_are_never_reused() -> None:
    tracker = IoUTracker(max_age_s=0.1)
    first = tracker.update([_person(0, 0), _person(500, 0)], 0.0)
    later = tracker.update([_person(1000, 0)], 1.0)
    assert [p.track_id for p in first] == [1, 2]
    assert [p.track_id for p in later] == [3]


def test_keypoints_keep_an_id_when_the_box_jumps() -> None:
    # The same pose seen again after its box changed shape (e.g. an arm came into view).
    tracker = PoseTracker(recovery_distance=0.01)
    keypoints = empty_keypoints()
    keypoints[:17, 0] = np.linspace(100, 200, 17)
    keypoints[:17, 1] = np.linspace(100, 400, 17)
    keypoints[:17, 2] = 0.9
    before = Person(keypoints=keypoints.copy(), box=(90, 90, 210, 410), score=0.9)
    after = Person(keypoints=keypoints.copy(), box=(90, 90, 600, 410), score=0.9)
    tracker.update([before], 0.0)
    tracker.update([after], 1 / FPS)
    assert box_iou(np.array(before.box), np.array(after.box)) < 0.3
    assert after.track_id == before.track_id


def test_recovery_matches_a_nearby_box_after_a_change_of_shape() -> None:
    # A crouch: the box halves in height and shifts, IoU falls under the threshold.
    standing, crouched = _person(100, 100, 100, 300), _person(140, 300, 160, 110)
    plain, recovering = IoUTracker(), IoUTracker(recovery_distance=1.0)
    for tracker in (plain, recovering):
        tracker.update([standing], 0.0)
    first = standing.track_id
    crouched_plain = _person(140, 300, 160, 110)
    plain.update([crouched_plain], 0.1)
    recovering.update([crouched], 0.1)
    assert crouched_plain.track_id != first
    assert crouched.track_id == first
    assert box_iou(np.array(standing.box), np.array(crouched.box)) < 0.3


def test_timestamps_going_back_are_rejected() -> None:
    tracker = IoUTracker()
    tracker.update([_person(0, 0)], 1.0)
    with pytest.raises(ValueError, match="must not go back"):
        tracker.update([_person(0, 0)], 0.5)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"iou_threshold": 0.0}, "min_similarity"),
        ({"max_age_s": 0.0}, "max_age_s"),
        ({"recovery_distance": -1.0}, "recovery_distance"),
    ],
)
def test_invalid_parameters_are_rejected(options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        IoUTracker(**options)


def test_create_tracker_by_backend() -> None:
    assert isinstance(create_tracker("yolo"), PoseTracker)
    assert isinstance(create_tracker("mediapipe"), SinglePersonTracker)
    assert isinstance(create_tracker("auto"), SinglePersonTracker | PoseTracker)
    with pytest.raises(ValueError, match="unknown pose backend 'openpose'"):
        create_tracker("openpose")


def test_a_duplicate_box_never_takes_the_confirmed_person_away() -> None:
    """The shared curl clip, frame by frame (640x360, 15 fps): YOLO boxes the athlete without
    the barbell (x 176-374), then once twice (with it, 177-470, and without, 178-380: IoU
    0.69, under its NMS threshold), then only with it (180-473).  The extra box opens a
    tentative track that fits the next box better than the athlete's own track; it must not
    take it: the athlete keeps his id (and his rep in progress), and no second person is
    confirmed."""
    tracker = create_tracker("yolo")
    t = 0.0
    athlete = None
    for _ in range(10):
        (person,) = tracker.update([Person(empty_keypoints(), (176.0, 1.0, 374.0, 355.0), 0.94)], t)
        athlete = person.track_id
        t += 1 / 15
    assert athlete is not None
    assert tracker.is_confirmed(athlete)
    wide, narrow = (
        Person(empty_keypoints(), (177.0, 1.0, 470.0, 355.0), 0.86),
        Person(empty_keypoints(), (178.0, 1.0, 380.0, 354.0), 0.40),
    )
    tracker.update([wide, narrow], t)
    assert athlete in (wide.track_id, narrow.track_id)
    ids = set()
    for step in range(10):
        t += 1 / 15
        (person,) = tracker.update([Person(empty_keypoints(), (180.0 + step, 1.0, 473.0, 356.0), 0.93)], t)
        ids.add(person.track_id)
    assert ids == {athlete}
    assert [i for i in range(1, 10) if tracker.is_confirmed(i)] == [athlete]
