"""Reports: CSV rows per person and keypoint, strict JSON, the angle plot and the summary."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from rich.console import Console

from pose_analyzer.keypoints import KEYPOINT_NAMES, NUM_KEYPOINTS
from pose_analyzer.report import (
    ANGLE_COLUMNS,
    KEYPOINT_COLUMNS,
    PLOT_SIZE_PX,
    AngleHistory,
    FileSummary,
    ReportWriter,
    mean_score,
    plot_angle_over_time,
    summary_table,
)
from pose_analyzer.types import Fault, FrameAnalysis, Person, PersonAnalysis, RejectedRep, RepRecord

RNG = np.random.default_rng(7)


def _person(track_id: int | None, angles: dict[str, float]) -> PersonAnalysis:
    keypoints = np.column_stack(
        [
            RNG.uniform(0, 640, NUM_KEYPOINTS),
            RNG.uniform(0, 480, NUM_KEYPOINTS),
            RNG.uniform(0, 1, NUM_KEYPOINTS),
        ]
    ).astype(np.float32)
    keypoints[3] = (np.nan, np.nan, 0.0)  # an unseen keypoint
    person = Person(keypoints=keypoints, box=(1.0, 2.0, 300.0, 400.0), score=0.8, track_id=track_id)
    return PersonAnalysis(person=person, angles=angles, rep_count=0, phase="up")


def _frames(count: int = 30) -> list[FrameAnalysis]:
    """Two tracks; track 1 bends its knee from 170 to 90 and back, track 2 leaves after 10 frames."""
    frames = []
    for i in range(count):
        t = i / 30.0
        knee = 130.0 + 40.0 * math.cos(2 * math.pi * i / count)
        people = [_person(1, {"left_knee": knee, "left_hip": 150.0, "neck": float("nan")})]
        if i < 10:
            people.append(_person(2, {"left_knee": 175.0, "left_hip": 170.0}))
        frames.append(FrameAnalysis(index=i, timestamp=t, width=640, height=480, people=people))
    return frames


def _rep(index: int, start: float, end: float, score: float) -> RepRecord:
    fault = Fault(code="shallow", message="Go deeper", weight=0.2)
    return RepRecord("squat", index, start, end, 80.0, end - start, score, [fault])


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def test_keypoint_csv_has_one_row_per_person_and_keypoint(tmp_path: Path) -> None:
    frames = _frames()
    with ReportWriter(tmp_path, "clip") as report:
        for frame in frames:
            report.add(frame)
    columns, rows = _read_csv(tmp_path / "clip.keypoints.csv")
    assert tuple(columns) == KEYPOINT_COLUMNS
    people = sum(len(f.people) for f in frames)
    assert len(rows) == people * NUM_KEYPOINTS
    assert [r["keypoint"] for r in rows[:NUM_KEYPOINTS]] == list(KEYPOINT_NAMES)
    first = frames[0].people[0].person.keypoints
    assert float(rows[0]["x"]) == pytest.approx(first[0, 0], abs=0.01)
    assert float(rows[0]["conf"]) == pytest.approx(first[0, 2], abs=0.001)
    # The unseen keypoint is empty cells, not "nan".
    assert (rows[3]["x"], rows[3]["y"]) == ("", "")
    assert {r["track_id"] for r in rows} == {"1", "2"}
    assert float(rows[-1]["time"]) == pytest.approx(frames[-1].timestamp, abs=1e-4)


def test_angle_csv_has_one_row_per_person_and_angle(tmp_path: Path) -> None:
    frames = _frames()
    with ReportWriter(tmp_path, "clip") as report:
        for frame in frames:
            report.add(frame)
    columns, rows = _read_csv(tmp_path / "clip.angles.csv")
    assert tuple(columns) == ANGLE_COLUMNS
    assert len(rows) == sum(len(p.angles) for f in frames for p in f.people)
    neck = [r for r in rows if r["angle"] == "neck"]
    assert neck
    assert all(r["degrees"] == "" for r in neck)


def test_untracked_people_have_an_empty_track_id(tmp_path: Path) -> None:
    frame = FrameAnalysis(0, 0.0, 640, 480, [_person(None, {})])
    with ReportWriter(tmp_path, "img") as report:
        report.add(frame)
    _, rows = _read_csv(tmp_path / "img.keypoints.csv")
    assert {r["track_id"] for r in rows} == {""}


def test_analysis_json_is_strict_and_complete(tmp_path: Path) -> None:
    frames = _frames()
    reps = {1: [_rep(1, 0.1, 0.9, 82.5)], 2: []}
    with ReportWriter(tmp_path, "clip") as report:
        for frame in frames:
            report.add(frame)
        rejected = {1: [RejectedRep("squat", 1.0, 1.6, "cut", "a cut", "mean")], 2: []}
        report.write_json({"source": "clip.mp4", "exercise": "squat"}, reps, rejected)
    text = (tmp_path / "clip.analysis.json").read_text()
    assert "NaN" not in text
    data = json.loads(text)
    assert data["source"] == "clip.mp4"
    assert len(data["frames"]) == len(frames)
    person = data["frames"][0]["people"][0]
    assert person["track_id"] == 1
    assert len(person["keypoints"]) == NUM_KEYPOINTS
    assert person["keypoints"][3] == [None, None, 0.0]
    assert person["angles"]["neck"] is None
    assert person["angles"]["left_knee"] == pytest.approx(170.0)
    assert data["reps"] == [
        {
            "track_id": 1,
            "exercise": "squat",
            "index": 1,
            "start_s": 0.1,
            "end_s": 0.9,
            "range_of_motion_deg": 80.0,
            "tempo_s": 0.8,
            "score": 82.5,
            "faults": [{"code": "shallow", "message": "Go deeper", "weight": 0.2}],
            "reference": None,
        }
    ]
    assert data["rejected"] == [
        {
            "track_id": 1,
            "exercise": "squat",
            "start_s": 1.0,
            "end_s": 1.6,
            "reason": "cut",
            "message": "a cut",
            "side": "mean",
        }
    ]
    assert person["rejected"] is None
    assert person["count_by_side"] is None


def test_widest_angle_is_the_one_that_moves_most() -> None:
    history = AngleHistory()
    for frame in _frames():
        history.add(frame)
    assert history.widest_angle() == "left_knee"
    assert AngleHistory().widest_angle() is None
    # NaN samples are not kept.
    assert "neck" not in history.series[1]


def test_plot_has_the_requested_size_and_shades_reps(tmp_path: Path) -> None:
    history = AngleHistory()
    for frame in _frames():
        history.add(frame)
    plain, shaded = tmp_path / "plain.png", tmp_path / "shaded.png"
    plot_angle_over_time(plain, history, ["left_knee"], {})
    plot_angle_over_time(shaded, history, ["left_knee"], {1: [_rep(1, 0.2, 0.6, 90.0)]})
    a, b = cv2.imread(str(plain)), cv2.imread(str(shaded))
    assert a.shape == b.shape == (PLOT_SIZE_PX[1], PLOT_SIZE_PX[0], 3)
    # Shading tints a band of the white plot background in the track's colour.
    tinted = np.any(a != b, axis=2)
    band_columns = np.nonzero(tinted.sum(axis=0) > PLOT_SIZE_PX[1] // 3)[0]
    assert band_columns.size > 50
    # Shaded from 0.2 s to 0.6 s of a 0.97 s axis: the band is a minority of the width, not the legend.
    assert band_columns.size < PLOT_SIZE_PX[0] // 2


def test_mean_score_over_all_tracks() -> None:
    reps = {1: [_rep(1, 0, 1, 80.0), _rep(2, 1, 2, 90.0)], 2: [_rep(1, 0, 1, 70.0)]}
    assert mean_score(reps) == pytest.approx(80.0)
    assert mean_score({1: []}) is None


def test_summary_table_and_dict_show_analysed_and_skipped_files() -> None:
    good = FileSummary(file="a.mp4", kind="video", frames=91, people=1, reps=1, mean_score=88.0, fps=25.0)
    bad = FileSummary(file="[b].mp4", error="cannot open video")
    console = Console(record=True, width=200)
    console.print(summary_table([good, bad]))
    text = console.export_text()
    assert "a.mp4" in text
    assert "91" in text
    assert "88.0" in text
    assert "[b].mp4" in text
    assert "skipped: cannot open video" in text
    assert good.to_dict()["ok"] is True
    assert bad.to_dict()["ok"] is False
    json.dumps([good.to_dict(), bad.to_dict()], allow_nan=False)


def test_plot_needs_an_angle(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one angle"):
        plot_angle_over_time(tmp_path / "x.png", AngleHistory(), [], {})
