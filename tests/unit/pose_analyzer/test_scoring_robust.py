"""Scores that survive a keypoint model's glitches and known angle error, and still penalise
a bad rep: synthetic reps sampled at 15 fps (as the shared clips are analysed)."""

from __future__ import annotations

import numpy as np
import pytest

from pose_analyzer.detection.registry import BACKENDS, angle_tolerance
from pose_analyzer.exercises import load_exercise
from pose_analyzer.exercises.scoring import FormScorer
from pose_analyzer.types import Frame
from tests.unit.pose_analyzer.test_engine import FPS as ENGINE_FPS
from tests.unit.pose_analyzer.test_engine import IMAGE, DetectingEngine, ReplayDetector, squatter

FPS = 15.0


def _elbow_rep(top: float, bottom: float, seconds: float = 2.0) -> np.ndarray:
    """A push-up's elbow angle: ``top`` -> ``bottom`` -> ``top`` as a cosine, at FPS."""
    t = np.arange(0.0, seconds, 1 / FPS)
    return bottom + (top - bottom) * (0.5 + 0.5 * np.cos(2 * np.pi * t / seconds))


def _codes(scorer: FormScorer, series: dict[str, np.ndarray]) -> set[str]:
    return {f.code for f in scorer.assess(series).faults}


def test_a_one_frame_glitch_neither_fakes_nor_hides_a_fault() -> None:
    scorer = FormScorer(load_exercise("push_up"))
    good = _elbow_rep(top=175.0, bottom=80.0)
    assert _codes(scorer, {"elbow": good}) == set()
    # A wrist snapping onto the elbow for one frame at the top reads the elbow near 0 deg:
    # it is not a shallow rep, and (at a shallow rep's bottom) it must not hide one.
    glitched = good.copy()
    glitched[2] = 3.0
    assert _codes(scorer, {"elbow": glitched}) == set()
    shallow = _elbow_rep(top=175.0, bottom=120.0)
    assert _codes(scorer, {"elbow": shallow}) == {"shallow_depth"}
    shallow[len(shallow) // 2] = 5.0
    assert _codes(scorer, {"elbow": shallow}) == {"shallow_depth"}
    # One frame reading straight arms does not make a rep with bent arms locked out.
    bent = _elbow_rep(top=140.0, bottom=80.0)
    bent[0] = 179.0
    assert _codes(scorer, {"elbow": bent}) == {"no_lockout"}


def test_the_keypoint_models_angle_tolerance_spares_its_error_not_a_bad_rep() -> None:
    exercise = load_exercise("push_up")
    strict, tolerant = FormScorer(exercise), FormScorer(exercise, angle_tolerance_deg=11.0)
    # Locked out at 152 deg: a model whose elbow reads up to 11 deg short at lockout cannot
    # tell that from 160.
    near = {"elbow": _elbow_rep(top=152.0, bottom=80.0)}
    assert _codes(strict, near) == {"no_lockout"}
    assert _codes(tolerant, near) == set()
    assert tolerant.assess(near).score == 100.0
    # Genuinely bent arms at the top, and a half push-up: beyond any model's error.
    bad = {"elbow": _elbow_rep(top=135.0, bottom=80.0)}
    assert _codes(tolerant, bad) == {"no_lockout"}
    assert tolerant.assess(bad).score == pytest.approx(100 * (1 - 25 / 65), abs=0.05)
    half = {"elbow": _elbow_rep(top=175.0, bottom=125.0), "body_line": np.full(30, 140.0)}
    assert _codes(tolerant, half) == {"shallow_depth", "hips_out_of_line"}
    assert tolerant.assess(half).score == pytest.approx(100 * (1 - 75 / 100))


def test_the_angle_tolerance_applies_to_angles_only() -> None:
    scorer = FormScorer(load_exercise("squat"), angle_tolerance_deg=11.0)
    knee = _elbow_rep(top=175.0, bottom=85.0)
    peak = int(np.argmin(knee))
    # Knees caving in (width ratio 0.6 against 0.8) is a ratio of distances, not an angle.
    valgus = np.full(knee.size, 0.6)
    assert {f.code for f in scorer.assess({"knee": knee, "knee_width_ratio": valgus}, peak).faults} == {
        "knee_valgus"
    }


def test_a_fast_techniques_one_sample_apex_counts() -> None:
    """A punch's full extension may last one sample: no running median for fast techniques."""
    scorer = FormScorer(load_exercise("straight_punch"))
    elbow = np.array([80.0, 95.0, 130.0, 170.0, 125.0, 90.0, 80.0])
    assert "bent_arm" not in _codes(scorer, {"elbow": elbow})
    elbow[3] = 150.0
    assert "bent_arm" in _codes(scorer, {"elbow": elbow})


def test_a_negative_tolerance_is_refused() -> None:
    with pytest.raises(ValueError, match="angle_tolerance_deg"):
        FormScorer(load_exercise("push_up"), angle_tolerance_deg=-1.0)


def test_the_engine_scores_with_the_tolerance_it_is_given() -> None:
    """Squats standing up to 163 deg (counted: rest is 160) against ``no_lockout``'s 165: a
    fault for the model the limits were set with, within a model's 11 deg error."""
    t = np.arange(int(3 * 2.0 * ENGINE_FPS)) / ENGINE_FPS
    knee = 124.0 + 39.0 * np.cos(2 * np.pi * t / 2.0)  # 163 -> 85 -> 163
    faults = {}
    for tolerance in (0.0, 11.0):
        engine = DetectingEngine(
            ReplayDetector([[squatter(a)] for a in knee]), exercise="squat", angle_tolerance_deg=tolerance
        )
        for i in range(knee.size):
            engine.process(Frame(IMAGE, i / ENGINE_FPS, i))
        assert engine.rep_count() == 3
        faults[tolerance] = [{f.code for f in rep.faults} for rep in engine.reps()]
    assert faults[0.0] == [{"no_lockout"}] * 3
    assert faults[11.0] == [set()] * 3


def test_every_backend_states_its_angle_tolerance() -> None:
    for backend in BACKENDS:
        assert 0.0 <= angle_tolerance(backend) < 20.0
