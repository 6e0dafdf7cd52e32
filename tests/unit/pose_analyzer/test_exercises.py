"""Exercise definitions, the rep counter, form scoring and reference comparison."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from pose_analyzer.exercises import (
    ExerciseDefinitionError,
    FormScorer,
    ReferenceMotion,
    RepCounter,
    available_exercises,
    dtw_distance,
    load_exercise,
    parse_exercise,
)

SHIPPED = {
    "squat",
    "push_up",
    "biceps_curl",
    "lunge",
    "jumping_jack",
    "front_kick",
    "horse_stance",
    "glute_bridge",
    "straight_punch",
    "jab_cross",
    "roundhouse_kick",
}
RULE = {
    "code": "shallow",
    "metric": "knee",
    "aggregate": "min",
    "max": 100,
    "weight": 50,
    "message": "Deeper.",
}
GOOD = {
    "name": "knee_bend",
    "display_name": "Knee bend",
    "driver": {"angle": "knee", "side": "mean", "rest": 160, "peak": 110},
    "rules": [RULE],
}


def _yaml(**changes: object) -> str:
    data = {**GOOD, **changes}
    return yaml.safe_dump(data)


def feed(counter: RepCounter, angles: np.ndarray, fps: float = 30.0, name: str = "knee") -> list[int]:
    """Feed a driver-angle series (both sides equal) and return the count after each frame."""
    counts = []
    for i, a in enumerate(angles):
        counter.update(i / fps, {f"left_{name}": float(a), f"right_{name}": float(a)})
        counts.append(counter.count)
    return counts


def squat_series(reps: int, fps: float = 30.0, period_s: float = 2.0) -> np.ndarray:
    """Standing (175 deg) -> 80 deg -> standing, ``reps`` times, starting and ending standing."""
    t = np.arange(int(reps * period_s * fps)) / fps
    return 127.5 + 47.5 * np.cos(2 * np.pi * t / period_s)


def test_all_shipped_exercises_load() -> None:
    assert set(available_exercises()) == SHIPPED
    for name in SHIPPED:
        ex = load_exercise(name)
        assert ex.name == name
        assert ex.rules, f"{name} has no form rules"


def test_unknown_exercise_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown exercise 'burpee'.*squat"):
        load_exercise("burpee")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"driver": {"angle": "knees", "rest": 160, "peak": 110}}, "unknown angle 'knees'"),
        ({"driver": {"angle": "knee", "rest": 120, "peak": 110}}, "must differ by at least"),
        ({"driver": {"angle": "knee", "rest": 160, "peak": 200}}, "driver.peak"),
        ({"driver": {"angle": "knee", "side": "up", "rest": 160, "peak": 110}}, "driver.side"),
        ({"rules": [{**RULE, "min": 120, "max": 100}]}, "min .* must be below max"),
        (
            {"rules": [{**RULE, "metric": "elbow_flare"}]},
            "unknown angle or measure 'elbow_flare'",
        ),
        ({"rules": [{**RULE, "max": None}]}, "needs min, max or both"),
        ({"threshold": 3}, "threshold: Extra inputs"),
        ({"kind": "hold"}, "needs hold_s > 0"),
        ({"min_rep_s": 5, "max_rep_s": 2}, "min_rep_s"),
    ],
)
def test_bad_definition_gives_a_clear_error(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ExerciseDefinitionError, match=message):
        parse_exercise(_yaml(**changes), "bad.yaml")


def test_malformed_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\ndriver: [unclosed\n")
    with pytest.raises(ExerciseDefinitionError, match=r"broken\.yaml: not valid YAML"):
        load_exercise(path)
    with pytest.raises(ExerciseDefinitionError, match="no such exercise definition file"):
        load_exercise(tmp_path / "absent.yaml")


def test_a_new_exercise_is_just_a_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "knee_bend.yaml"
    path.write_text(_yaml())
    counter = RepCounter(load_exercise(path))
    assert feed(counter, squat_series(3))[-1] == 3


def test_counter_counts_clean_reps_and_records_them() -> None:
    counter = RepCounter(load_exercise("squat"))
    feed(counter, squat_series(4))
    assert counter.count == 4
    for i, rep in enumerate(counter.reps, start=1):
        assert rep.index == i
        assert rep.exercise == "squat"
        assert rep.range_of_motion_deg == pytest.approx(95.0, abs=1.0)
        assert 1.0 < rep.tempo_s < 2.0
        assert rep.score == 100.0  # 80 deg is deep enough, 175 is a lockout


def test_noise_around_a_threshold_does_not_count() -> None:
    rng = np.random.default_rng(1)
    counter = RepCounter(load_exercise("squat"))
    standing = np.full(30, 175.0)
    # Jitter of +-8 deg around the peak threshold (110) and later around the rest threshold (160).
    near_peak = 110.0 + rng.uniform(-8, 8, 300)
    near_rest = 160.0 + rng.uniform(-8, 8, 300)
    counts = feed(counter, np.concatenate([standing, np.linspace(175, 110, 30), near_peak]))
    assert counts[-1] == 0
    counts = feed(counter, np.concatenate([near_rest, near_rest]))
    assert counter.count <= 1  # at most the one real descent completes
    counter2 = RepCounter(load_exercise("squat"))
    feed(counter2, np.concatenate([standing, near_rest, near_rest]))
    assert counter2.count == 0


def test_a_clip_starting_mid_rep_does_not_count_the_partial_rep() -> None:
    counter = RepCounter(load_exercise("squat"))
    series = squat_series(3)
    start = int(0.5 * 30)  # enter at the bottom of the first squat
    feed(counter, series[start:])
    assert counter.count == 2
    assert counter.reps[0].start_time > 0.4


def test_an_attempt_that_misses_the_peak_is_not_a_rep() -> None:
    counter = RepCounter(load_exercise("squat"))
    half = 150.0 + 25.0 * np.cos(np.linspace(0, 2 * np.pi, 60))  # only down to 125 deg
    feed(counter, np.concatenate([np.full(10, 175.0), half, half]))
    assert counter.count == 0
    assert counter.phase == "rest"


def test_too_fast_reps_are_rejected() -> None:
    counter = RepCounter(load_exercise("squat"))  # min_rep_s 0.5
    feed(counter, np.tile([175.0, 100.0, 175.0], 5), fps=30.0)  # 2 frames = 67 ms per rep
    assert counter.count == 0


def test_hold_exercise_counts_only_long_enough_holds() -> None:
    counter = RepCounter(load_exercise("glute_bridge"))  # hip rest <= 140, peak >= 165, hold 0.5 s
    lying = np.full(15, 120.0)
    up = np.linspace(120, 178, 15)
    short = np.concatenate([lying, up, np.full(3, 178.0), up[::-1]])
    long = np.concatenate([lying, up, np.full(30, 178.0), up[::-1], lying])
    feed(counter, short, name="hip")
    assert counter.count == 0
    feed(counter, long, name="hip")
    assert counter.count == 1


def test_best_side_follows_the_visible_side() -> None:
    counter = RepCounter(load_exercise("push_up"))  # elbow, side best
    for i, a in enumerate(
        np.concatenate([np.full(10, 170.0), np.linspace(170, 80, 20), np.linspace(80, 170, 20)])
    ):
        counter.update(
            i / 30.0, {"left_elbow": float(a), "right_elbow": math.nan}, None, {"left": 0.9, "right": 0.1}
        )
    assert counter.side == "left"
    assert counter.count == 1


def test_form_faults_carry_feedback_and_lower_the_score() -> None:
    counter = RepCounter(load_exercise("squat"))
    shallow = 140.0 + 35.0 * np.cos(np.linspace(0, 2 * np.pi, 60))  # 175 -> 105: counted, not deep
    feed(counter, np.concatenate([np.full(10, 175.0), shallow, np.full(5, 175.0)]))
    assert counter.count == 1
    rep = counter.reps[0]
    assert [f.code for f in rep.faults] == ["shallow_depth"]
    assert "deeper" in rep.faults[0].message.lower()
    assert rep.score == pytest.approx(100 * (1 - 40 / 55), abs=0.1)  # trunk and valgus unseen: not scored


def test_scorer_skips_rules_without_data_and_flags_out_of_range_values() -> None:
    scorer = FormScorer(load_exercise("push_up"))
    score, faults = scorer.score(
        {"elbow": np.array([170.0, 170.0, 120.0, 86.0, 85.0, 86.0, 120.0, 170.0, 170.0])}, peak_index=4
    )
    assert faults == []
    assert score == 100.0
    score, faults = scorer.score(
        {
            "elbow": np.array([150.0, 95.0, 95.0, 95.0, 150.0]),
            "body_line": np.array([170.0, 140.0, 140.0, 140.0, 170.0]),
        }
    )
    assert {f.code for f in faults} == {"shallow_depth", "hips_out_of_line", "no_lockout"}
    assert score == 0.0


def test_dtw_identical_series_score_100() -> None:
    rep = squat_series(1)[:, None]
    ref = ReferenceMotion(("knee",), rep)
    assert dtw_distance(rep, rep) == 0.0
    assert ref.score(rep) == 100.0


def test_dtw_time_warped_copy_scores_high_and_different_motion_low() -> None:
    t = np.linspace(0, 1, 60)
    ref_series = np.stack([127.5 + 47.5 * np.cos(2 * np.pi * t), 150 + 20 * np.cos(2 * np.pi * t)], axis=1)
    ref = ReferenceMotion(("knee", "hip"), ref_series)
    warped_t = np.linspace(0, 1, 95) ** 1.6  # slower start, faster finish, different length
    warped = np.stack(
        [127.5 + 47.5 * np.cos(2 * np.pi * warped_t), 150 + 20 * np.cos(2 * np.pi * warped_t)], axis=1
    )
    half_depth = np.stack([150 + 25 * np.cos(2 * np.pi * t), 165 + 5 * np.cos(2 * np.pi * t)], axis=1)
    other = np.stack([90 + 60 * np.sin(4 * np.pi * t), 100 + 0 * t], axis=1)
    s_warped, s_half, s_other = ref.score(warped), ref.score(half_depth), ref.score(other)
    assert s_warped > 85
    assert s_other < 20
    assert s_other < s_half < s_warped
    # Without warping, the same warped copy compares much worse sample by sample.
    naive = np.abs(ref_series - warped[np.linspace(0, 94, 60).astype(int)]).mean()
    assert dtw_distance(ref_series, warped) < 0.5 * naive


def test_dtw_rejects_bad_series() -> None:
    with pytest.raises(ValueError, match="NaN"):
        dtw_distance(np.array([1.0, np.nan, 2.0]), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="angles"):
        dtw_distance(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="columns"):
        ReferenceMotion(("knee",), np.zeros((5, 2)))


def test_reference_round_trips_through_a_file(tmp_path: Path) -> None:
    ref = ReferenceMotion(("knee",), squat_series(1), tolerance_deg=10.0)
    ref.save(tmp_path / "ref.npz")
    loaded = ReferenceMotion.load(tmp_path / "ref.npz")
    assert loaded.angles == ("knee",)
    assert loaded.tolerance_deg == 10.0
    np.testing.assert_allclose(loaded.series, ref.series)
