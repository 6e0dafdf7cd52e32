"""Reference reps end to end: DTW feedback (per angle, worst phase), the engine scoring every rep
against a reference, the output model, and the CLI's ``--reference``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pose_analyzer.cli import app
from pose_analyzer.engine import PoseEngine
from pose_analyzer.exercises.reference import (
    PHASES,
    ReferenceMotion,
    load_reference,
    reference_from_dict,
    reference_to_dict,
)
from pose_analyzer.keypoints import Keypoint as K
from pose_analyzer.output import RepOut
from pose_analyzer.types import Detections, Frame
from tests.unit.pose_analyzer.test_engine import FPS, knee_series, squatter

DARK = np.zeros((480, 640, 3), dtype=np.uint8)
ANGLES = ("left_knee", "right_knee")


def _rep(samples: int, depth: float = 85.0) -> np.ndarray:
    """One squat's knees: 175 -> ``depth`` -> 175 over ``samples`` samples, both knees alike."""
    phase = np.linspace(0.0, 2 * np.pi, samples)
    knee = (175.0 + depth) / 2 + (175.0 - depth) / 2 * np.cos(phase)
    return np.stack([knee, knee], axis=1)


def test_the_same_rep_done_slower_is_like_the_reference() -> None:
    reference = ReferenceMotion(ANGLES, _rep(60))
    slower = reference.compare(_rep(90))
    # DTW pairs samples of two grids: at most half a step of the steepest slope apart,
    # 45 deg * 2 pi / 89 steps / 2 = 1.6 deg (the mean is well under it).
    assert slower.distance_deg < 45 * 2 * math.pi / 89 / 2
    assert slower.score > 90
    same = reference.compare(_rep(60))
    assert same.score == 100.0
    assert same.per_angle_deg == {"left_knee": 0.0, "right_knee": 0.0}


def test_a_shallow_rep_differs_most_at_the_peak_in_the_knees() -> None:
    reference = ReferenceMotion(ANGLES, _rep(60))
    shallow = reference.compare(_rep(60, depth=115.0))
    assert shallow.worst_phase == "peak"
    # 30 degrees short at the bottom, less on the way: the peak's mean difference is the largest.
    assert 15.0 < shallow.worst_phase_deg <= 30.0 * math.sqrt(2)
    assert shallow.per_angle_deg["left_knee"] == pytest.approx(shallow.per_angle_deg["right_knee"])
    assert shallow.per_angle_deg["left_knee"] > 5.0
    assert shallow.score < reference.compare(_rep(60, depth=95.0)).score
    assert "at the peak" in shallow.message
    assert "left knee" in shallow.message


def test_one_knee_lagging_on_the_way_back_is_named() -> None:
    reference = ReferenceMotion(ANGLES, _rep(60))
    rep = _rep(60)
    rep[40:, 1] -= np.linspace(0.0, 40.0, 20) * np.sin(np.linspace(0, np.pi, 20))  # right knee lags
    result = reference.compare(rep)
    assert result.worst_phase == "from_peak"
    assert result.per_angle_deg["right_knee"] > result.per_angle_deg["left_knee"]


def test_reference_json_round_trip_and_bad_input(tmp_path: Path) -> None:
    reference = ReferenceMotion(ANGLES, _rep(30), tolerance_deg=10.0)
    path = tmp_path / "ref.json"
    path.write_text(json.dumps(reference_to_dict(reference)))
    loaded = load_reference(path)
    assert loaded.angles == ANGLES
    np.testing.assert_array_equal(loaded.series, reference.series)
    assert loaded.tolerance_deg == 10.0
    npz = tmp_path / "ref.npz"
    reference.save(npz)
    assert load_reference(npz).angles == ANGLES
    for bad in ({"angles": ["left_knee"]}, {"angles": "knee", "series": [[1], [2]]}, [1, 2]):
        with pytest.raises(ValueError, match=r"reference|angles|series"):
            reference_from_dict(bad)
    with pytest.raises(ValueError, match="columns"):
        reference_from_dict({"angles": ["left_knee"], "series": [[1, 2], [3, 4]]})
    (tmp_path / "ref.txt").write_text("x")
    with pytest.raises(ValueError, match=r"\.json or \.npz"):
        load_reference(tmp_path / "ref.txt")


def _squat_engine(reference: ReferenceMotion, depths: list[float]) -> PoseEngine:
    engine = PoseEngine(exercise="squat", reference=reference)
    i = 0
    for depth in depths:
        for angle in _rep(round(2 * FPS), depth)[:, 0]:
            engine.analyse(Frame(DARK, i / FPS, i), Detections(people=[squatter(float(angle))]))
            i += 1
    return engine


def test_the_engine_scores_every_rep_against_the_reference() -> None:
    reference = ReferenceMotion(ANGLES, _rep(60))
    engine = _squat_engine(reference, [85.0, 85.0, 105.0])
    reps = engine.reps()
    assert len(reps) == 3
    assert all(r.reference is not None for r in reps)
    good, _, shallow = (r.reference for r in reps)
    assert good is not None
    assert shallow is not None
    # The engine's knees are measured on the drawn keypoints, smoothed, and the rep's span is
    # where the counter says it starts and ends: close to the reference, not identical.
    assert good.score > 70
    assert shallow.score < good.score
    assert shallow.worst_phase == "peak"
    out = RepOut.of(reps[-1])
    assert out.reference is not None
    assert out.reference.worst_phase in PHASES
    assert out.reference.message == shallow.message


def test_without_a_reference_reps_have_none() -> None:
    engine = PoseEngine(exercise="squat")
    for i, angle in enumerate(knee_series(1)):
        engine.analyse(Frame(DARK, i / FPS, i), Detections(people=[squatter(float(angle))]))
    assert engine.rep_count() == 1
    assert engine.reps()[0].reference is None
    assert RepOut.of(engine.reps()[0]).reference is None


def test_a_reference_naming_an_unknown_angle_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown angle"):
        PoseEngine(exercise="squat", reference=ReferenceMotion(("left_tail",), _rep(10)[:, :1]))


runner = CliRunner()


def test_cli_reference_needs_an_exercise_and_a_valid_file(test_data: Path, tmp_path: Path) -> None:
    clip = str(test_data / "videos" / "bridging_1rep.mp4")
    good = tmp_path / "ref.json"
    good.write_text(json.dumps(reference_to_dict(ReferenceMotion(ANGLES, _rep(30)))))
    result = runner.invoke(app, ["analyze", clip, "--reference", str(good), "-o", str(tmp_path)])
    assert result.exit_code == 2
    assert "needs --exercise" in result.output
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"angles": ["left_tail"], "series": [[1], [2]]}))
    args = ["analyze", clip, "--exercise", "glute_bridge", "--reference", str(bad), "-o", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "unknown angle" in result.output


@pytest.mark.slow
def test_cli_scores_each_rep_of_a_video_against_the_reference(test_data: Path, tmp_path: Path) -> None:
    hips = 180.0 + 60.0 * (np.cos(np.linspace(0.0, 2 * np.pi, 40)) - 1) / 2  # 180 -> 120 -> 180
    reference = tmp_path / "bridge.json"
    reference.write_text(
        json.dumps({"angles": ["left_hip", "right_hip"], "series": np.stack([hips, hips], 1).tolist()})
    )
    clip = str(test_data / "videos" / "bridging_1rep.mp4")
    out = tmp_path / "out"
    args = ["--exercise", "glute_bridge", "--reference", str(reference), "-o", str(out)]
    result = runner.invoke(app, ["analyze", clip, *args, "--no-overlay", "--no-plot", "--every", "2"])
    assert result.exit_code == 0, result.output
    analysis = json.loads((out / "bridging_1rep.analysis.json").read_text())
    assert len(analysis["reps"]) == 1
    compared = analysis["reps"][0]["reference"]
    assert 0 <= compared["score"] <= 100
    assert set(compared["per_angle_deg"]) == {"left_hip", "right_hip"}
    assert compared["worst_phase"] in PHASES


def test_an_angle_hidden_on_the_rep_is_left_out_of_the_comparison() -> None:
    reference = ReferenceMotion(ANGLES, _rep(60))
    engine = PoseEngine(exercise="squat", reference=reference)
    for i, angle in enumerate(_rep(round(2 * FPS))[:, 0]):
        person = squatter(float(angle))
        person.keypoints[K.RIGHT_KNEE, 2] = 0.0  # the far knee, hidden: right_knee is NaN
        engine.analyse(Frame(DARK, i / FPS, i), Detections(people=[person]))
    (rep,) = engine.reps()
    assert rep.reference is not None
    assert set(rep.reference.per_angle_deg) == {"left_knee"}
    assert rep.reference.score > 70
