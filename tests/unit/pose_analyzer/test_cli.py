"""The command line on real clips and images: rep counts, report files, bad files in a batch."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import cv2
import pytest
from typer.testing import CliRunner, Result

from pose_analyzer.cli import app
from pose_analyzer.exercises import available_exercises
from pose_analyzer.file_analysis import driving_angles, output_stems
from pose_analyzer.keypoints import NUM_KEYPOINTS
from pose_analyzer.report import ANGLE_COLUMNS, KEYPOINT_COLUMNS, PLOT_SIZE_PX

runner = CliRunner()


def _analyze(*args: str) -> tuple[Result, dict[str, Any]]:
    result = runner.invoke(app, ["analyze", *args, "--json-summary"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    summary = json.loads(result.stdout.strip().splitlines()[-1]) if result.stdout.strip() else {}
    return result, summary


def _frame_count(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def _csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


@pytest.fixture(scope="module")
def bridging_run(test_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One full analysis (every output) of the 1-rep glute bridge clip, shared by the tests below."""
    out = tmp_path_factory.mktemp("bridging")
    result, summary = _analyze(
        str(test_data / "videos" / "bridging_1rep.mp4"), "--exercise", "glute_bridge", "--output", str(out)
    )
    assert result.exit_code == 0, result.output
    return out, summary


@pytest.mark.slow
def test_bridging_clip_counts_one_rep(bridging_run: tuple[Path, dict[str, Any]]) -> None:
    _, summary = bridging_run
    assert summary["analysed"] == 1
    assert summary["failed"] == 0
    (file,) = summary["files"]
    assert file["ok"] is True
    assert file["reps"] == 1
    assert file["people"] == 1
    assert 0 <= file["mean_score"] <= 100


@pytest.mark.slow
def test_bridging_outputs_are_complete_and_consistent(
    bridging_run: tuple[Path, dict[str, Any]], test_data: Path
) -> None:
    out, summary = bridging_run
    source = test_data / "videos" / "bridging_1rep.mp4"
    frames = _frame_count(source)
    assert summary["files"][0]["frames"] == frames

    analysis = json.loads((out / "bridging_1rep.analysis.json").read_text())
    assert analysis["exercise"] == "glute_bridge"
    assert len(analysis["frames"]) == frames
    assert len(analysis["reps"]) == 1
    assert {"score", "faults", "start_s", "end_s", "track_id"} <= analysis["reps"][0].keys()
    people_rows = sum(len(f["people"]) for f in analysis["frames"])
    assert people_rows > frames // 2  # the person is seen in most frames

    columns, rows = _csv(out / "bridging_1rep.keypoints.csv")
    assert tuple(columns) == KEYPOINT_COLUMNS
    assert len(rows) == people_rows * NUM_KEYPOINTS
    columns, rows = _csv(out / "bridging_1rep.angles.csv")
    assert tuple(columns) == ANGLE_COLUMNS
    assert len(rows) == sum(len(p["angles"]) for f in analysis["frames"] for p in f["people"])

    plot = cv2.imread(str(out / "bridging_1rep.angles.png"))
    assert plot.shape == (PLOT_SIZE_PX[1], PLOT_SIZE_PX[0], 3)

    overlay = out / "bridging_1rep.overlay.mp4"
    capture = cv2.VideoCapture(str(overlay))
    assert capture.isOpened()
    ok, first = capture.read()
    capture.release()
    assert ok
    assert first.shape[:2] == (analysis["height"], analysis["width"])
    assert _frame_count(overlay) == frames


@pytest.mark.slow
def test_curl_clip_starting_mid_rep_counts_three(test_data: Path, tmp_path: Path) -> None:
    # Every 2nd frame (15 fps) keeps this 439-frame test short; the engine tests count at full rate.
    clip = test_data / "videos" / "curl_3reps_starts_midrep.mp4"
    args = ("--exercise", "biceps_curl", "-o", str(tmp_path), "--no-overlay", "--no-plot", "--every", "2")
    result, summary = _analyze(str(clip), *args)
    assert result.exit_code == 0, result.output
    assert summary["files"][0]["reps"] == 3
    assert summary["files"][0]["frames"] == (_frame_count(clip) + 1) // 2
    written = sorted(p.name for p in tmp_path.iterdir())
    stem = clip.stem
    assert written == [f"{stem}.analysis.json", f"{stem}.angles.csv", f"{stem}.keypoints.csv"]


def test_folder_with_bad_files_skips_them_and_analyses_the_rest(test_data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    clip = test_data / "videos" / "bridging_1rep.mp4"
    shutil.copy(clip, folder / "good.mp4")
    data = clip.read_bytes()
    (folder / "broken.mp4").write_bytes(data[: len(data) // 3])
    (folder / "notes.txt").write_text("not a video\n")
    out = tmp_path / "out"
    args = ("--exercise", "glute_bridge", "-o", str(out), "--no-overlay", "--every", "3")
    result, summary = _analyze(str(folder), *args)
    assert result.exit_code == 0, result.output
    by_name = {Path(f["file"]).name: f for f in summary["files"]}
    assert set(by_name) == {"good.mp4", "broken.mp4", "notes.txt"}
    assert (summary["analysed"], summary["failed"]) == (1, 2)
    assert by_name["good.mp4"]["ok"] is True
    assert by_name["good.mp4"]["frames"] == -(-_frame_count(clip) // 3)
    assert "cannot open video" in by_name["broken.mp4"]["error"]
    assert "not a video or image" in by_name["notes.txt"]["error"]
    # Reported on stderr with file and reason; nothing written for the skipped files.
    assert "broken.mp4" in result.stderr
    assert "cannot open video" in result.stderr
    assert {p.name.split(".")[0] for p in out.iterdir()} == {"good"}


def test_every_file_failing_exits_non_zero(tmp_path: Path) -> None:
    (tmp_path / "a.mp4").write_bytes(b"\x00" * 100)
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg")
    result, summary = _analyze(str(tmp_path), "-o", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert (summary["analysed"], summary["failed"]) == (0, 2)


def test_empty_folder_exits_non_zero(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["analyze", str(tmp_path / "empty"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "no files" in result.stderr


def test_unknown_exercise_is_a_usage_error(test_data: Path, tmp_path: Path) -> None:
    clip = test_data / "videos" / "bridging_1rep.mp4"
    result = runner.invoke(app, ["analyze", str(clip), "--exercise", "handstand", "-o", str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown exercise 'handstand'" in result.stderr
    assert "squat" in result.stderr
    assert not any(tmp_path.iterdir())


def test_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["analyze", str(tmp_path / "nope.mp4")])
    assert result.exit_code == 2


def test_single_image_is_analysed_statically(test_data: Path, tmp_path: Path) -> None:
    image_path = test_data / "images" / "mediapipe_pose_test_image.jpg"
    result, summary = _analyze(str(image_path), "-o", str(tmp_path), "--backend", "mediapipe")
    assert result.exit_code == 0, result.output
    (file,) = summary["files"]
    assert (file["kind"], file["frames"], file["people"], file["reps"]) == ("image", 1, 1, 0)
    stem = image_path.stem
    overlay = cv2.imread(str(tmp_path / f"{stem}.overlay.png"))
    source = cv2.imread(str(image_path))
    assert overlay.shape == source.shape
    assert (overlay != source).any()
    _, rows = _csv(tmp_path / f"{stem}.keypoints.csv")
    assert len(rows) == NUM_KEYPOINTS
    assert not (tmp_path / f"{stem}.angles.png").exists()


def test_exercises_command_lists_every_exercise() -> None:
    result = runner.invoke(app, ["exercises"])
    assert result.exit_code == 0
    listed = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    assert listed == available_exercises()


def test_output_stems_disambiguate_same_stem_files() -> None:
    files = [Path("a/clip.mp4"), Path("a/clip.jpg"), Path("a/other.mov")]
    assert output_stems(files) == {
        Path("a/clip.mp4"): "clip_mp4",
        Path("a/clip.jpg"): "clip_jpg",
        Path("a/other.mov"): "other",
    }


def test_multi_person_image_with_yolo_reports_every_person(test_data: Path, tmp_path: Path) -> None:
    image_path = test_data / "images" / "bus.jpg"
    result, summary = _analyze(str(image_path), "-o", str(tmp_path), "--backend", "yolo", "--no-plot")
    assert result.exit_code == 0, result.output
    (file,) = summary["files"]
    assert file["people"] >= 2
    analysis = json.loads((tmp_path / "bus.analysis.json").read_text())
    (frame,) = analysis["frames"]
    assert len(frame["people"]) == file["people"]
    _, rows = _csv(tmp_path / "bus.keypoints.csv")
    assert len(rows) == file["people"] * NUM_KEYPOINTS
    # Untracked people of one image get distinct ids, one per detection.
    assert len({r["track_id"] for r in rows}) == file["people"]


def test_plotted_angles_follow_the_exercise_driver() -> None:
    # biceps_curl drives on "elbow" from the best-seen side: both sides are plotted.
    assert driving_angles("biceps_curl") == ["left_elbow", "right_elbow"]
    assert driving_angles(None) == []


def _splice(first: Path, second: Path, frames_each: int, out: Path) -> float:
    """Write ``frames_each`` frames of ``first`` then of ``second`` (resized to the first's size)
    as one mp4; returns its frame rate."""
    readers = [cv2.VideoCapture(str(p)) for p in (first, second)]
    fps = readers[0].get(cv2.CAP_PROP_FPS)
    writer: cv2.VideoWriter | None = None
    try:
        for capture in readers:
            for _ in range(frames_each):
                ok, image = capture.read()
                assert ok
                if writer is None:
                    size = (image.shape[1], image.shape[0])
                    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
                writer.write(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
    finally:
        for capture in readers:
            capture.release()
        if writer is not None:
            writer.release()
    return fps


@pytest.mark.slow
def test_a_cut_in_a_video_is_found_and_written_with_every_rejected_rep(
    test_data: Path, tmp_path: Path
) -> None:
    videos = test_data / "videos"
    clip = tmp_path / "spliced.mp4"
    fps = _splice(videos / "squat_8reps.mp4", videos / "pushup_4reps.mp4", 30, clip)
    out = tmp_path / "out"
    args = ("--exercise", "squat", "-o", str(out), "--no-overlay", "--no-plot", "--every", "2")
    result, _ = _analyze(str(clip), *args)
    assert result.exit_code == 0, result.output
    analysis = json.loads((out / "spliced.analysis.json").read_text())
    # Frames 0, 2, ... are analysed: the second clip's first frame (30) follows the cut.
    assert analysis["cuts_s"] == [pytest.approx(30 / fps, abs=1e-3)]
    assert isinstance(analysis["rejected"], list)
    assert all(
        {"track_id", "reason", "message", "start_s", "end_s"} <= r.keys() for r in analysis["rejected"]
    )
    # One person (MediaPipe): one track through the cut, with its reps per side (a squat: "mean").
    assert set(analysis["reps_by_side"]) == {"1"}
    assert sum(analysis["reps_by_side"]["1"].values()) == len(analysis["reps"])
    people = [p for f in analysis["frames"] for p in f["people"]]
    assert people
    assert all("rejected" in p and "count_by_side" in p for p in people)
