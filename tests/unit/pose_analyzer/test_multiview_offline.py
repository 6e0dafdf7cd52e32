"""Offline 3D: exports (TRC, CSV, plot), pairing videos with cameras, the CLI on a few real frames."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from pose_analyzer.cli import app
from pose_analyzer.keypoints import KEYPOINT_NAMES
from pose_analyzer.multiview import CameraRig, RigError, read_rig
from pose_analyzer.multiview.bones import DEFAULT_MIN_SAMPLES, BoneLengthPrior
from pose_analyzer.multiview.export import read_trc, write_series_csv, write_trc
from pose_analyzer.multiview.offline import calibration_scale, match_videos, run_multiview
from pose_analyzer.multiview.triangulation import Triangulator
from tests.multiview_synthetic import random_people

runner = CliRunner()


@pytest.fixture(scope="module")
def multicam(test_data: Path) -> Path:
    return test_data / "multicam"


@pytest.fixture(scope="module")
def rig(multicam: Path) -> CameraRig:
    return read_rig(multicam / "Calib.qca.txt")


def test_trc_has_opensims_layout_and_reads_back(tmp_path: Path) -> None:
    points = random_people(np.random.default_rng(0), 5)
    points[2, 4] = np.nan
    path = tmp_path / "walk.trc"
    write_trc(path, points, fps=60.0)
    lines = path.read_text().splitlines()
    assert lines[0] == "PathFileType\t4\t(X/Y/Z)\twalk.trc"
    assert lines[1].split("\t")[:5] == ["DataRate", "CameraRate", "NumFrames", "NumMarkers", "Units"]
    assert lines[2].split("\t")[:5] == ["60", "60", "5", "21", "m"]
    assert lines[3].startswith("Frame#\tTime\tnose\t\t\tleft_eye")
    assert lines[4].startswith("\t\tX1\tY1\tZ1\tX2")
    assert lines[5].split("\t")[:2] == ["1", "0.000000"]
    names, times, values = read_trc(path)
    assert names == list(KEYPOINT_NAMES)
    np.testing.assert_allclose(times, np.arange(5) / 60.0, atol=5e-7)
    # OpenSim is Y-up: (X, Y, Z) = (y, z, x) of the Z-up rig; 6 decimals round to 5e-7 m
    np.testing.assert_allclose(values, points[..., [1, 2, 0]], atol=5e-7)
    assert np.isnan(values[2, 4]).all()
    assert np.nanmin(values[..., 1]) > -0.01  # heights are Y now: the feet are on the floor
    with pytest.raises(ValueError, match="points must be"):
        write_trc(path, points[..., :2], fps=60.0)


def test_series_csv(tmp_path: Path) -> None:
    points = random_people(np.random.default_rng(1), 3)
    err = np.full((3, 21), 2.5)
    err[1, 0] = np.nan
    path = tmp_path / "s.csv"
    write_series_csv(path, np.arange(3) / 30.0, points, err, {"left_knee": np.array([170.0, np.nan, 120.0])})
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3
    assert float(rows[2]["left_hip_z"]) == pytest.approx(points[2, 11, 2], abs=5e-6)
    assert rows[1]["nose_reproj_px"] == ""
    assert rows[1]["left_knee"] == ""
    assert rows[2]["left_knee"] == "120.00"


def test_calibration_scale() -> None:
    assert calibration_scale((1088, 1920), (1088, 1920)) == ((1.0, 1.0), "")
    scale, note = calibration_scale((544, 960), (1088, 1920))
    assert scale == (2.0, 2.0)
    assert "scaled" in note
    scale, note = calibration_scale((1080, 1920), (1088, 1920))
    assert scale == (1.0, 1.0)
    assert "as they are" in note


def test_videos_are_paired_by_name_by_order_or_as_told(
    rig: CameraRig, multicam: Path, tmp_path: Path
) -> None:
    videos = [multicam / "videos" / f"cam0{i}.mp4" for i in (3, 1, 4, 2)]
    assert [v.camera.name for v in match_videos(videos, rig)] == ["cam03", "cam01", "cam04", "cam02"]
    renamed = []
    for i, video in enumerate(videos):
        renamed.append(tmp_path / f"view{i}.mp4")
        shutil.copy(video, renamed[-1])
    assert [v.camera.name for v in match_videos(renamed, rig)] == list(rig.names)
    assert [v.camera.name for v in match_videos(renamed[:2], rig, ["cam04", "cam02"])] == ["cam04", "cam02"]
    with pytest.raises(RigError, match="cannot tell which camera"):
        match_videos(renamed[:3], rig)
    with pytest.raises(RigError, match="no camera 'cam9'"):
        match_videos(renamed[:2], rig, ["cam01", "cam9"])
    with pytest.raises(RigError, match="at least two"):
        match_videos(renamed[:1], rig)


def test_cli_triangulates_a_few_real_frames(multicam: Path, tmp_path: Path) -> None:
    videos = [str(multicam / "videos" / f"cam0{i}.mp4") for i in range(1, 5)]
    rig_path = str(multicam / "Calib_qualisys.toml")
    result = runner.invoke(
        app,
        [
            "triangulate",
            *videos,
            "--rig",
            rig_path,
            "-o",
            str(tmp_path),
            "--frames",
            "4",
            "--overlays",
            "--json-summary",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["frames"] == 4
    assert summary["triangulated_fraction"] > 0.9
    assert 0 < summary["reprojection_px"]["mean"] < 15  # the outlier threshold: a loose sanity bound
    for suffix in (".trc", ".csv", ".reprojection.png", ".summary.json"):
        assert (tmp_path / f"triangulation{suffix}").stat().st_size > 0
    _, _, values = read_trc(tmp_path / "triangulation.trc")
    assert values.shape == (4, 21, 3)
    overlay = cv2.VideoCapture(str(tmp_path / "overlays" / "cam03.overlay.mp4"))
    assert int(overlay.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    overlay.release()


def test_offline_refines_limbs_with_the_live_bone_length_prior(multicam: Path, rig: CameraRig) -> None:
    """The offline points are the live single-person path's: Triangulator, then BoneLengthPrior.

    Replayed here on the detections the run recorded: the same operations on the same inputs,
    so they agree to rounding (1e-9 m against points of about a metre).  Once the prior has
    learnt the lengths (DEFAULT_MIN_SAMPLES groups), it moves some limb joint by more than
    rounding: the comparison could not pass with the plain triangulation.
    """
    videos = match_videos([multicam / "videos" / f"cam0{i}.mp4" for i in range(1, 5)], rig)
    groups = DEFAULT_MIN_SAMPLES + 3
    series = run_multiview(videos, max_groups=groups)
    assert series.points.shape == (groups, len(KEYPOINT_NAMES), 3)
    tri = Triangulator(CameraRig(tuple(v.camera for v in videos)), series.cameras)
    prior = BoneLengthPrior()
    plain, refined = [], []
    for points2d, confidence in zip(series.points2d, series.confidence, strict=True):
        result = tri(points2d, confidence)
        plain.append(result.points)
        refined.append(prior(result, tri).points)
    np.testing.assert_allclose(series.points, np.array(refined), rtol=0, atol=1e-9)
    moved = np.abs(np.array(refined) - np.array(plain))
    assert np.nanmax(moved) > 1e-4, "the prior never moved a joint: the comparison says nothing"


def test_cli_with_yolo_writes_one_set_of_files_per_person(multicam: Path, tmp_path: Path) -> None:
    # YOLO sees the athlete in the four cameras and an operator behind him in cam01 and cam02
    # (test_multiview_yolo): two people, ids 0 and 1, each with its own files.
    videos = [str(multicam / "videos" / f"cam0{i}.mp4") for i in range(1, 5)]
    args = ["triangulate", *videos, "--rig", str(multicam / "Calib.qca.txt"), "-o", str(tmp_path)]
    result = runner.invoke(app, [*args, "--frames", "3", "--backend", "yolo", "--json-summary"])
    assert result.exit_code == 0, result.output
    people = json.loads(result.stdout.strip().splitlines()[-1])["people"]
    assert sorted(people) == ["0", "1"]
    for person in people.values():
        assert person["frames"] == 3
        assert 0 < person["reprojection_px"]["mean"] < 15
    assert people["1"]["reprojection_px"]["by_camera"]["cam03"] is None  # cam01 and cam02 only
    for stem in ("triangulation.person0", "triangulation.person1"):
        _, _, values = read_trc(tmp_path / f"{stem}.trc")
        assert values.shape == (3, 21, 3)
        assert (tmp_path / f"{stem}.summary.json").stat().st_size > 0
    # The two are metres apart: the operator stands behind the athlete.
    _, _, athlete = read_trc(tmp_path / "triangulation.person0.trc")
    _, _, operator = read_trc(tmp_path / "triangulation.person1.trc")
    assert np.linalg.norm(np.nanmean(athlete - operator, axis=1), axis=-1).min() > 2.0
    bad = runner.invoke(app, [*args, "--backend", "openpose"])
    assert bad.exit_code == 2
    assert "openpose" in bad.output


def test_cli_bad_options_exit_2(multicam: Path, tmp_path: Path) -> None:
    videos = [str(multicam / "videos" / f"cam0{i}.mp4") for i in (1, 2)]
    bad_rig = tmp_path / "rig.toml"
    bad_rig.write_text("[cam01]\nname = 'cam01'\n")
    result = runner.invoke(app, ["triangulate", *videos, "--rig", str(bad_rig), "-o", str(tmp_path)])
    assert result.exit_code == 2
    assert "missing" in result.output
    rig_path = str(multicam / "Calib.qca.txt")
    result = runner.invoke(app, ["triangulate", *videos, "--rig", rig_path, "--cameras", "cam01,camX"])
    assert result.exit_code == 2
    assert "camX" in result.output
