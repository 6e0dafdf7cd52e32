"""The counting core wired into the engine: confirmed tracks, kept identities, cuts, rejected reps.

Synthetic detections built here (a side-view squatter with exact knee angles, from
``test_engine``) drive the real engine, trackers and cut detector.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from pose_analyzer.detection.registry import create_tracker
from pose_analyzer.engine import PoseEngine
from pose_analyzer.tracking import Confirmation, PoseTracker, Tracker
from pose_analyzer.types import Detections, Frame, FrameAnalysis, Person
from tests.unit.pose_analyzer.test_engine import FPS, knee_series, squatter

DARK = np.zeros((480, 640, 3), dtype=np.uint8)
# Another shot: a bright, coloured scene (the grey level alone changes by ~0.6).
BRIGHT = np.full((480, 640, 3), (40, 200, 230), dtype=np.uint8)

Script = list[list[Person]]


def _run(
    script: Script, tracker: Tracker | None = None, images: list[npt.NDArray[np.uint8]] | None = None
) -> tuple[PoseEngine, list[FrameAnalysis]]:
    engine = PoseEngine(tracker=tracker, exercise="squat")
    frames = []
    for i, people in enumerate(script):
        image = DARK if images is None else images[i]
        frames.append(engine.analyse(Frame(image, i / FPS, i), Detections(people=people)))
    return engine, frames


def _squats(reps: int, x0: float = 150.0) -> Script:
    return [[squatter(a, x0=x0)] for a in knee_series(reps)]


# --- confirmed tracks ---------------------------------------------------------------------------


def test_ghost_people_never_reach_the_output_or_the_reps() -> None:
    """YOLO's ghosts live 1 to 8 frames: none is reported, the athlete alone is."""
    script = _squats(3)
    for start, length in ((20, 1), (45, 4), (100, 8)):  # 8 frames = 0.27 s at 30 fps
        for i in range(start, start + length):
            script[i] = [*script[i], squatter(175.0, x0=480.0)]
    engine, frames = _run(script, create_tracker("yolo"))
    reported = {p.person.track_id for f in frames for p in f.people}
    assert len(reported) == 1
    assert engine.track_ids() == sorted(t for t in reported if t is not None)
    assert all(len(f.people) <= 1 for f in frames)
    assert engine.rep_count() == 3


def test_a_person_is_reported_once_confirmed_and_counted_from_the_first_frame() -> None:
    engine, frames = _run(_squats(2), create_tracker("yolo"))
    first_reported = next(i for i, f in enumerate(frames) if f.people)
    # Confirmed on the first frame that makes 3 hits over at least 0.3 s.
    assert first_reported == round(0.3 * FPS)
    assert all(f.people for f in frames[first_reported:])
    # The counter ran from frame 0: it saw the rest the clip starts in (at frame 9 the knees
    # are already at 156 degrees, under the 160-degree rest) and counts the first rep.
    assert engine.rep_count() == 2


def test_a_person_lost_briefly_and_found_where_they_were_keeps_id_and_reps() -> None:
    script = _squats(4)
    gone = range(100, 145)  # 1.5 s unseen: longer than max_age_s, shorter than keep_lost_s
    for i in gone:
        script[i] = []
    kept, kept_frames = _run(script, create_tracker("yolo"))
    assert kept.track_ids() == [1]
    starts = [r.start_time for r in kept.reps()]
    assert min(starts) < gone.start / FPS < gone.stop / FPS < max(starts)
    assert [r.index for r in kept.reps()] == list(range(1, len(starts) + 1))
    assert {p.person.track_id for f in kept_frames for p in f.people} == {1}
    # Without keeping lost tracks the same person comes back as someone else.
    split, _ = _run(script, PoseTracker())
    assert len(split.track_ids()) == 2


def test_someone_appearing_elsewhere_after_a_loss_is_a_new_person() -> None:
    script = _squats(3)
    for i in range(60, 100):
        script[i] = []
    for i in range(100, len(script)):
        script[i] = [squatter(175.0, x0=520.0)]
    engine, _ = _run(script, create_tracker("yolo"))
    assert engine.track_ids() == [1, 2]


def test_the_single_person_backend_keeps_one_id_through_jumps_and_long_losses() -> None:
    script = _squats(4)
    for i in range(50, 170):  # 4 s unseen
        script[i] = []
    for i in range(170, len(script)):
        script[i] = [squatter(knee_series(4)[i], x0=450.0)]  # back somewhere else
    engine, frames = _run(script, create_tracker("mediapipe"))
    assert engine.track_ids() == [1]
    assert {p.person.track_id for f in frames for p in f.people} == {1}
    assert frames[0].people, "one person is confirmed on sight"


def test_a_custom_confirmation_is_honoured() -> None:
    tracker = PoseTracker(confirmation=Confirmation(min_hits=12, min_duration_s=0.0))
    _, frames = _run(_squats(1), tracker)
    assert next(i for i, f in enumerate(frames) if f.people) == 11


# --- cuts ---------------------------------------------------------------------------------------


def _cut_inside_rep_two() -> int:
    """A frame of rep 2 (frames 60-120, knees deepest at 90) after its peak, before standing up."""
    return 105


def test_a_scene_cut_inside_a_rep_drops_it_and_says_why() -> None:
    script = _squats(3)
    cut = _cut_inside_rep_two()
    images = [DARK] * cut + [BRIGHT] * (len(script) - cut)
    engine, frames = _run(script, images=images)
    assert engine.cuts == [cut / FPS]
    assert engine.rep_count() == 2
    assert [r.reason for r in engine.rejected()] == ["cut"]
    rejected = engine.rejected()[0]
    # The candidate ends on the last frame before the cut.
    assert rejected.start_time < rejected.end_time == (cut - 1) / FPS
    # The person's frames say it too, from the cut on; and the rep is never reported.
    assert frames[cut].people[0].new_rejected == [rejected]
    assert frames[-1].people[0].last_rejected == rejected
    assert all(f.people[0].new_rejected == [] for f in frames[:cut])
    # The same frames without the cut: three reps.
    same, _ = _run(script)
    assert same.rep_count() == 3
    assert same.cuts == []


def test_a_box_jump_inside_a_rep_is_a_cut_for_that_person() -> None:
    series = knee_series(3)
    cut = _cut_inside_rep_two()
    script = [[squatter(a, x0=150.0 if i < cut else 480.0)] for i, a in enumerate(series)]
    engine, _ = _run(script)
    assert engine.cuts == []  # the picture did not change
    assert engine.rep_count() == 2
    assert [r.reason for r in engine.rejected()] == ["cut"]


def test_a_cut_detector_can_be_turned_off() -> None:
    script = _squats(3)
    cut = _cut_inside_rep_two()
    images = [DARK] * cut + [BRIGHT] * (len(script) - cut)
    engine = PoseEngine(exercise="squat", detect_cuts=False)
    for i, people in enumerate(script):
        engine.analyse(Frame(images[i], i / FPS, i), Detections(people=people))
    assert engine.cuts == []
    assert engine.rep_count() == 3


def test_grey_images_are_analysed_without_a_cut_test() -> None:
    engine = PoseEngine(exercise="squat")
    grey = np.zeros((480, 640), dtype=np.uint8)
    analysis = engine.analyse(Frame(grey, 0.0, 0), Detections(people=[squatter(175.0)]))
    assert len(analysis.people) == 1
    assert engine.cuts == []
