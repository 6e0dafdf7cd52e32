"""The counter on synthetic angle sequences with exact angles: scores from what was seen,
posture preconditions, the starting state, cuts and gaps."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pytest
import yaml

from pose_analyzer.exercises import (
    ExerciseDefinitionError,
    FormScorer,
    RepCounter,
    load_exercise,
    parse_exercise,
)
from pose_analyzer.exercises.machine import START_HOLD_S

FPS = 30.0


def ramp(a: float, b: float, seconds: float) -> np.ndarray:
    """From ``a`` to ``b`` in ``seconds`` at FPS, excluding ``b``."""
    return np.linspace(a, b, round(seconds * FPS), endpoint=False)


def hold(a: float, seconds: float) -> np.ndarray:
    return np.full(round(seconds * FPS), a)


def pushup(top: float = 170.0, bottom: float = 80.0) -> np.ndarray:
    """One push-up: down in 0.6 s, up in 0.6 s, from and back to ``top``."""
    return np.concatenate([ramp(top, bottom, 0.6), ramp(bottom, top, 0.6), hold(top, 0.3)])


def feed(
    counter: RepCounter,
    elbow: Iterable[float],
    t0: float = 0.0,
    extra: dict[str, float] | None = None,
) -> float:
    """Feed an elbow series (both arms equal) with ``extra`` angles/measures; return the next time."""
    t = t0
    for a in elbow:
        counter.update(t, {"left_elbow": float(a), "right_elbow": float(a), **(extra or {})})
        t += 1 / FPS
    return t


# -- 1. scores only from what was seen ------------------------------------------------


def test_a_rep_with_no_measurable_rule_has_no_score() -> None:
    """push_up rules: elbow depth and lockout, hip line.  With a definition whose only rule
    needs the hip, a rep with no hip seen is counted but scored nothing, never 100."""
    text = """
name: arm_only
display_name: Arm only
driver: {angle: elbow, side: mean, rest: 155, peak: 100}
rules:
  - {code: hips, metric: hip, aggregate: min, min: 160, weight: 10, message: "Straight body."}
"""
    counter = RepCounter(parse_exercise(text))
    feed(counter, np.concatenate([hold(170, 0.5), pushup()]))
    assert counter.count == 1
    rep = counter.reps[0]
    assert math.isnan(rep.score)
    assert rep.measured_rules == []
    assert rep.unmeasured_rules == ["hips"]
    assert rep.faults == []
    assessment = FormScorer(counter.exercise).assess({"hip": np.full(5, np.nan)})
    assert assessment.score is None
    assert FormScorer(counter.exercise).score({})[0] is None


def test_the_score_covers_only_the_measured_rules() -> None:
    counter = RepCounter(load_exercise("push_up"))  # shallow 40, hips 35, lockout 25
    # Elbow seen (deep enough, locked out), hip never seen: 2 of 3 rules measured, both pass.
    feed(counter, np.concatenate([hold(170, 0.5), pushup(bottom=80)]), extra={"trunk_lean": 85.0})
    rep = counter.reps[0]
    assert rep.score == 100.0
    assert sorted(rep.measured_rules) == ["no_lockout", "shallow_depth"]
    assert rep.unmeasured_rules == ["hips_out_of_line"]
    # A sagging body line seen on every frame is measured and fails: 35 of 100 weight lost.
    counter = RepCounter(load_exercise("push_up"))
    feed(
        counter,
        np.concatenate([hold(170, 0.5), pushup()]),
        extra={"trunk_lean": 85.0, "body_line": 140.0},
    )
    assert counter.reps[0].score == pytest.approx(65.0, abs=0.05)
    assert [f.code for f in counter.reps[0].faults] == ["hips_out_of_line"]


# -- 2. posture preconditions --------------------------------------------------------


def test_push_up_arms_bent_while_standing_is_rejected_with_its_reason() -> None:
    """The issue's case: between sets, standing and talking, elbows bent to 70 deg."""
    counter = RepCounter(load_exercise("push_up"))
    end = feed(counter, np.concatenate([hold(170, 0.5), pushup(bottom=70)]), extra={"trunk_lean": 5.0})
    assert counter.count == 0
    assert len(counter.rejected) == 1
    rejected = counter.rejected[0]
    assert rejected.reason == "not_in_plank"
    assert "plank" in rejected.message
    assert 0.4 < rejected.start_time < rejected.end_time < end
    # The same arm movement in a plank counts.
    feed(counter, np.concatenate([hold(170, 0.5), pushup(bottom=70)]), t0=end, extra={"trunk_lean": 85.0})
    assert counter.count == 1
    assert len(counter.rejected) == 1


def test_a_precondition_must_hold_through_the_rep_not_just_at_its_start() -> None:
    counter = RepCounter(load_exercise("squat"))
    knee = np.concatenate([hold(175, 0.5), ramp(175, 90, 0.8), ramp(90, 175, 0.8), hold(175, 0.3)])
    t = 0.0
    for i, k in enumerate(knee):
        # Upright for the first 0.7 s of the movement, then lying (trunk at 80 deg from vertical).
        lean = 10.0 if i < 0.5 * FPS + 0.7 * FPS else 80.0
        counter.update(t, {"left_knee": float(k), "right_knee": float(k), "trunk_lean": lean})
        t += 1 / FPS
    assert counter.count == 0
    assert [r.reason for r in counter.rejected] == ["not_upright"]


def test_a_brief_precondition_glitch_or_an_unseen_metric_does_not_reject() -> None:
    counter = RepCounter(load_exercise("push_up"))
    series = np.concatenate([hold(170, 0.5), pushup()])
    t = 0.0
    for i, a in enumerate(series):
        lean = 20.0 if i == 25 else (math.nan if i in (30, 31) else 85.0)  # one bad frame, two unseen
        counter.update(t, {"left_elbow": float(a), "right_elbow": float(a), "trunk_lean": lean})
        t += 1 / FPS
    assert counter.count == 1
    assert counter.rejected == []
    # No trunk seen at all: the counter cannot know, so the rep counts.
    unseen = RepCounter(load_exercise("push_up"))
    feed(unseen, series)
    assert unseen.count == 1


def test_posture_from_keypoints_gates_a_curl() -> None:
    """hips_below_shoulders comes from the keypoints: a curl lying down is not a curl."""
    from pose_analyzer.keypoints import Keypoint as K
    from pose_analyzer.keypoints import empty_keypoints

    def body(lying: bool) -> np.ndarray:
        kps = empty_keypoints()
        shoulder, hip = ((100.0, 300.0), (300.0, 300.0)) if lying else ((200.0, 100.0), (200.0, 300.0))
        for k in (K.LEFT_SHOULDER, K.RIGHT_SHOULDER):
            kps[k] = (*shoulder, 0.9)
        for k in (K.LEFT_HIP, K.RIGHT_HIP):
            kps[k] = (*hip, 0.9)
        return kps

    curl = np.concatenate([hold(170, 0.5), ramp(170, 50, 0.8), ramp(50, 170, 0.8), hold(170, 0.3)])
    for lying, expected in ((False, 1), (True, 0)):
        counter = RepCounter(load_exercise("biceps_curl"))
        kps = body(lying)
        for i, a in enumerate(curl):
            counter.update(i / FPS, {"left_elbow": float(a), "right_elbow": float(a)}, keypoints=kps)
        assert counter.count == expected
        assert [r.reason for r in counter.rejected] == ([] if expected else ["hips_above_shoulders"])


# -- 3. starting state ---------------------------------------------------------------


def test_a_push_up_starting_just_under_rest_and_going_straight_down_counts() -> None:
    """The clip opens in the plank at 148 deg (rest threshold 155), held 0.5 s, then down."""
    counter = RepCounter(load_exercise("push_up"))
    feed(counter, np.concatenate([hold(148, 0.5), ramp(148, 80, 0.6), ramp(80, 165, 0.6), hold(165, 0.3)]))
    assert counter.count == 1
    assert counter.reps[0].start_time >= START_HOLD_S - 1e-9


def test_a_clip_starting_mid_rep_near_rest_but_moving_does_not_count_it() -> None:
    """The clip opens at 148 deg already on the way down: no still near-rest pose, no rep."""
    counter = RepCounter(load_exercise("push_up"))
    partial = np.concatenate([ramp(148, 80, 0.5), ramp(80, 170, 0.6), hold(170, 0.3)])
    end = feed(counter, partial)
    assert counter.count == 0
    assert counter.phase == "rest"
    feed(counter, pushup(), t0=end)
    assert counter.count == 1


def test_a_curl_clip_opening_on_the_way_down_waits_for_the_first_true_rest() -> None:
    """Like the shared curl clip: it opens lowering the bar, passing the near-rest band moving."""
    counter = RepCounter(load_exercise("biceps_curl"))  # rest 140, band from 130
    lowering = np.concatenate([ramp(70, 160, 0.9), hold(160, 0.4)])
    curl = np.concatenate([ramp(160, 50, 0.8), ramp(50, 160, 0.8), hold(160, 0.3)])
    feed(counter, np.concatenate([lowering, curl]))
    assert counter.count == 1
    assert counter.reps[0].start_time > 0.9


def test_a_near_rest_pose_held_still_but_too_briefly_is_not_a_start() -> None:
    counter = RepCounter(load_exercise("push_up"))
    brief = hold(148, START_HOLD_S / 2)
    feed(counter, np.concatenate([brief, ramp(148, 80, 0.6), ramp(80, 150, 0.6)]))
    assert counter.count == 0
    assert counter.phase == "waiting"


def test_after_a_gap_a_near_rest_pose_held_is_a_new_start() -> None:
    counter = RepCounter(load_exercise("push_up"))
    end = feed(counter, np.concatenate([hold(170, 0.5), pushup()]))
    assert counter.count == 1
    # Lost for 2 s, found again at 148 deg held still: a fresh start, as at a clip's start.
    feed(counter, np.concatenate([hold(148, 0.5), ramp(148, 80, 0.6), ramp(80, 165, 0.6)]), t0=end + 2.0)
    assert counter.count == 2


@pytest.mark.parametrize(
    ("precondition", "message"),
    [
        ({"code": "p", "metric": "trunk_lean", "message": "m"}, "needs min, max or both"),
        ({"code": "p", "metric": "trunk_lean", "min": 50, "max": 10, "message": "m"}, "must be below"),
        ({"code": "p", "metric": "torso_tilt", "max": 10, "message": "m"}, "unknown angle or measure"),
    ],
)
def test_bad_preconditions_give_a_clear_error(precondition: dict[str, object], message: str) -> None:
    data = {
        "name": "x",
        "display_name": "X",
        "driver": {"angle": "knee", "rest": 160, "peak": 110},
        "preconditions": [precondition],
    }
    with pytest.raises(ExerciseDefinitionError, match=message):
        parse_exercise(yaml.safe_dump(data))


def test_start_margin_is_validated() -> None:
    text = "name: x\ndisplay_name: X\ndriver: {angle: knee, rest: 160, peak: 110, start_margin: 30}\n"
    with pytest.raises(ExerciseDefinitionError, match="start_margin"):
        parse_exercise(text)


# -- 4. cuts and gaps -----------------------------------------------------------------


def _spliced(counter: RepCounter, cut: bool) -> None:
    """Shot A ends at the bottom of a push-up; shot B starts at the bottom of another one."""
    shot_a = np.concatenate([hold(170, 0.5), ramp(170, 80, 0.6)])
    end = feed(counter, shot_a)
    if cut:
        counter.mark_cut(end)
    end = feed(counter, np.concatenate([ramp(80, 170, 0.6), hold(170, 0.3)]), t0=end)
    feed(counter, pushup(), t0=end)


def test_a_cut_in_the_middle_of_a_rep_is_never_joined_into_one() -> None:
    joined = RepCounter(load_exercise("push_up"))
    _spliced(joined, cut=False)
    assert joined.count == 2  # without being told, the two halves make a rep
    counter = RepCounter(load_exercise("push_up"))
    _spliced(counter, cut=True)
    assert counter.count == 1  # only the full push-up of shot B
    assert [r.reason for r in counter.rejected] == ["cut"]
    assert counter.reps[0].start_time > 1.6


def test_a_gap_after_the_peak_rejects_the_candidate() -> None:
    counter = RepCounter(load_exercise("push_up"))
    end = feed(counter, np.concatenate([hold(170, 0.5), ramp(170, 80, 0.6)]))
    feed(counter, np.concatenate([ramp(80, 170, 0.6), hold(170, 0.3)]), t0=end + 1.5)
    assert counter.count == 0
    assert [r.reason for r in counter.rejected] == ["gap"]


def test_too_fast_candidates_are_kept_as_rejected() -> None:
    counter = RepCounter(load_exercise("squat"))  # min_rep_s 0.5
    for i, k in enumerate(np.tile([175.0, 100.0, 175.0], 3)):
        counter.update(i / FPS, {"left_knee": k, "right_knee": k})
    assert counter.count == 0
    assert {r.reason for r in counter.rejected} == {"too_short"}
