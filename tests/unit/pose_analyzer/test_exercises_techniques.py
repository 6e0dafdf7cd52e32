"""Fast techniques on synthetic angle sequences: velocity events, per-side counting,
combinations (straight punch, jab-cross, roundhouse kick)."""

from __future__ import annotations

import numpy as np
import pytest

from pose_analyzer.exercises import ExerciseDefinitionError, RepCounter, load_exercise, parse_exercise

GUARD = 70.0


def punch_profile(fps: float, apex: float = 172.0, out_s: float = 0.15, back_s: float = 0.2) -> np.ndarray:
    """One punch: guard -> ``apex`` in ``out_s`` -> guard in ``back_s``, cosine-shaped, at ``fps``."""
    n_out, n_back = max(round(out_s * fps), 1), max(round(back_s * fps), 1)
    out = GUARD + (apex - GUARD) * 0.5 * (1 - np.cos(np.pi * np.arange(n_out) / n_out))
    back = apex - (apex - GUARD) * 0.5 * (1 - np.cos(np.pi * np.arange(n_back + 1) / n_back))
    return np.concatenate([out, back])


def alternating_punches(
    punches: int, per_second: float, fps: float, apex: float = 172.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Times and left/right elbow angles: ``punches`` punches at ``per_second``, left first,
    alternating arms; 0.5 s of guard before and after."""
    duration = 0.5 + punches / per_second + 0.5
    t = np.arange(round(duration * fps)) / fps
    left, right = np.full(t.size, GUARD), np.full(t.size, GUARD)
    profile = punch_profile(fps, apex)
    for k in range(punches):
        start = round((0.5 + k / per_second) * fps)
        arm = left if k % 2 == 0 else right
        arm[start : start + profile.size] = profile[: arm.size - start]
    return t, left, right


def feed(counter: RepCounter, t: np.ndarray, left: np.ndarray, right: np.ndarray, **extra: float) -> None:
    for ti, a, b in zip(t, left, right, strict=True):
        counter.update(float(ti), {"left_elbow": float(a), "right_elbow": float(b), **extra})


def test_alternating_punches_at_two_per_second_are_counted_per_arm() -> None:
    counter = RepCounter(load_exercise("straight_punch"))
    t, left, right = alternating_punches(8, per_second=2.0, fps=30.0)
    feed(counter, t, left, right, trunk_lean=5.0)
    assert counter.count == 8
    assert counter.count_by_side() == {"left": 4, "right": 4}
    assert [r.side for r in counter.reps] == ["left", "right"] * 4
    # Each punch is found where it was thrown: peaks half a second apart.
    peaks = np.array([r.peak_time for r in counter.reps], dtype=float)
    assert np.diff(peaks) == pytest.approx(0.5, abs=1.5 / 30.0)
    assert counter.rejected == []


def test_overlapping_punches_are_each_counted() -> None:
    """At 4 per second the next arm leaves guard before the previous one is back."""
    counter = RepCounter(load_exercise("straight_punch"))
    t, left, right = alternating_punches(6, per_second=4.0, fps=30.0)
    assert ((left > GUARD) & (right > GUARD)).any(), "the punches must overlap in time"
    feed(counter, t, left, right, trunk_lean=5.0)
    assert counter.count_by_side() == {"left": 3, "right": 3}


def test_a_fast_apex_between_frames_counts_as_a_velocity_event() -> None:
    """At 12 fps a punch that opens to about 165 deg in 0.15 s is sampled at 112 and 150 deg:
    its apex falls between two frames, under the 155 deg peak threshold."""
    fps = 12.0
    guard = [GUARD] * 6
    snap = [112.0, 150.0, 108.0]
    left = np.array(guard + snap + guard + [GUARD] * 3 + guard + snap + guard)
    right = np.array(guard + [GUARD] * 3 + guard + snap + guard + [GUARD] * 3 + guard)
    t = np.arange(left.size) / fps
    counter = RepCounter(load_exercise("straight_punch"))
    feed(counter, t, left, right, trunk_lean=5.0)
    assert counter.count_by_side() == {"left": 2, "right": 1}
    # Without the velocity event (angle thresholds only) the same punches are lost.
    data = load_exercise("straight_punch").model_dump(mode="json")
    data["driver"].update(reversal_margin=0.0)
    thresholds_only = RepCounter(type(counter.exercise).model_validate(data))
    feed(thresholds_only, t, left, right, trunk_lean=5.0)
    assert thresholds_only.count == 0


def test_a_slow_arm_extension_is_not_a_punch() -> None:
    counter = RepCounter(load_exercise("straight_punch"))
    fps = 30.0
    reach = np.concatenate([np.full(15, GUARD), np.linspace(GUARD, 172, 45), np.linspace(172, GUARD, 45)])
    t = np.arange(reach.size) / fps  # 100 deg in 1.5 s: 68 deg/s
    feed(counter, t, reach, np.full(reach.size, GUARD), trunk_lean=5.0)
    assert counter.count == 0
    assert [(r.reason, r.side) for r in counter.rejected] == [("too_slow", "left")]


def test_the_wrist_must_move_away_from_the_shoulder() -> None:
    """An elbow opening while the wrist comes closer to the shoulder (an arm swinging up
    and in) is not a punch; ``wrist_reach`` comes from the keypoints or the measures."""
    t, left, right = alternating_punches(1, per_second=2.0, fps=30.0)
    for reach_at_peak, expected in ((0.98, 1), (0.3, 0)):
        counter = RepCounter(load_exercise("straight_punch"))
        for ti, a, b in zip(t, left, right, strict=True):
            reach = 0.5 + (reach_at_peak - 0.5) * (a - GUARD) / (172.0 - GUARD)
            counter.update(
                float(ti),
                {"left_elbow": float(a), "right_elbow": float(b), "trunk_lean": 5.0},
                {"left_wrist_reach": reach, "right_wrist_reach": 0.5},
            )
        assert counter.count == expected
        assert [r.reason for r in counter.rejected] == ([] if expected else ["not_rising"])


def test_jab_cross_counts_alternating_pairs_only() -> None:
    counter = RepCounter(load_exercise("jab_cross"))
    t, left, right = alternating_punches(4, per_second=2.0, fps=30.0)
    feed(counter, t, left, right, trunk_lean=5.0)
    assert counter.count == 2
    assert [r.side for r in counter.reps] == ["left+right", "left+right"]
    assert len(counter.strikes) == 4
    assert counter.reps[0].start_time < counter.reps[0].end_time < counter.reps[1].start_time
    # Two punches with the same arm are not a jab-cross.
    same = RepCounter(load_exercise("jab_cross"))
    t, left, _ = alternating_punches(1, per_second=2.0, fps=30.0)
    twice = np.concatenate([left, left])
    feed(same, np.arange(twice.size) / 30.0, twice, np.full(twice.size, GUARD), trunk_lean=5.0)
    assert same.count == 0
    assert len(same.strikes) == 2


def test_punches_too_far_apart_are_not_a_combination() -> None:
    counter = RepCounter(load_exercise("jab_cross"))  # within 0.8 s
    t, left, right = alternating_punches(4, per_second=0.5, fps=30.0)  # 2 s apart
    feed(counter, t, left, right, trunk_lean=5.0)
    assert len(counter.strikes) == 4
    assert counter.count == 0


def test_roundhouse_kicks_are_counted_per_leg() -> None:
    counter = RepCounter(load_exercise("roundhouse_kick"))
    fps = 30.0
    stand = np.full(15, 175.0)
    kick = np.concatenate([np.linspace(175, 85, 8), np.linspace(85, 175, 10)])  # 90 deg in 0.27 s
    left = np.concatenate([stand, kick, stand, stand, stand, kick, stand])
    right = np.full(left.size, 175.0)
    right[50 : 50 + kick.size] = kick  # between the two left kicks
    for i, (a, b) in enumerate(zip(left, right, strict=True)):
        counter.update(i / fps, {"left_hip": float(a), "right_hip": float(b), "trunk_lean": 20.0})
    assert counter.count_by_side() == {"left": 2, "right": 1}


def test_velocity_options_are_validated() -> None:
    base = "name: x\ndisplay_name: X\ndriver: {angle: elbow, rest: 110, peak: 155, %s}\n"
    with pytest.raises(ExerciseDefinitionError, match="reversal_margin needs min_speed"):
        parse_exercise(base % "reversal_margin: 10")
    with pytest.raises(ExerciseDefinitionError, match="unknown angle or measure"):
        parse_exercise(base % "rising: [wrist_speed]")
    with pytest.raises(ExerciseDefinitionError, match="min_speed"):
        parse_exercise(base % "min_speed: -1")
