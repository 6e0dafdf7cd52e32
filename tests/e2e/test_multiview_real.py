"""Real 3D: the four synchronised cameras of the Pose2Sim demo through the offline path.

MediaPipe runs over 4 x 100 frames (50-70 s on the shared 2-core box; its output is shared
by the tests below through a module fixture), then triangulation.

Held: mean reprojection error at most 10 px (Pose2Sim, on this same rig, refuses a
triangulation above 15 px by default) and every thigh, shank, upper-arm and forearm length
varying by at most 10 % (coefficient of variation) over the clip, in the written (6 Hz
Butterworth filtered) trajectories, the ones the TRC holds, and in the raw per-frame points
(the offline path applies the live bone-length prior; without it MediaPipe's wrist jitter
put the raw right forearm at 13.9 %, docs/multiview.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pose_analyzer.multiview import read_rig
from pose_analyzer.multiview.offline import MultiviewSeries, match_videos, run_multiview, summarise
from tests.multiview_synthetic import CAPTURE_CENTRE

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def series(test_data: Path) -> MultiviewSeries:
    multicam = test_data / "multicam"
    rig = read_rig(multicam / "Calib.qca.txt")
    videos = match_videos([multicam / "videos" / f"cam0{i}.mp4" for i in range(1, 5)], rig)
    return run_multiview(videos)


@pytest.fixture(scope="module")
def summary(series: MultiviewSeries) -> dict[str, Any]:
    return summarise(series)


def test_every_frame_is_triangulated(series: MultiviewSeries, summary: dict[str, Any]) -> None:
    assert summary["frames"] == 100
    assert summary["triangulated_fraction"] > 0.95
    assert np.isfinite(series.points).all(axis=(1, 2)).mean() > 0.9


def test_mean_reprojection_error_is_at_most_10_px(summary: dict[str, Any]) -> None:
    assert summary["reprojection_px"]["mean"] <= 10.0
    for camera, error in summary["reprojection_px"]["by_camera"].items():
        assert error <= 15.0, camera


def test_bones_keep_their_length(summary: dict[str, Any]) -> None:
    filtered = summary["bone_length_cv"]["filtered"]
    assert set(filtered) == {
        f"{s}_{b}" for s in ("left", "right") for b in ("thigh", "shank", "upper_arm", "forearm")
    }
    for bone, cv in filtered.items():
        assert cv <= 0.10, bone
    for bone, cv in summary["bone_length_cv"]["raw"].items():
        assert cv <= 0.10, bone


def test_knee_and_hip_angles_are_continuous_after_filtering(summary: dict[str, Any]) -> None:
    """At 60 fps a knee or hip turns by a few degrees per frame; 20 deg in one frame is a glitch."""
    for angle, jump in summary["max_angle_jump_deg"]["filtered"].items():
        assert jump < 20.0, angle


def test_the_person_is_where_the_cameras_look(series: MultiviewSeries) -> None:
    """Feet near the floor (z = 0 in the Qualisys frame; one foot is lifted in this balancing
    trial), nose 1.3-1.9 m up, hips within 0.5 m of where the four optical axes meet."""
    assert 0.0 < np.nanmedian(series.points[:, 15:17, 2]) < 0.35
    assert 1.3 < np.nanmedian(series.points[:, 0, 2]) < 1.9
    # Standing upright: nose above shoulders above hips above knees (COCO ids 0, 5-6, 11-12, 13-14).
    heights = [np.nanmedian(series.points[:, ids, 2]) for ids in ([0], [5, 6], [11, 12], [13, 14])]
    assert heights == sorted(heights, reverse=True), heights
    hips = np.nanmedian(series.points[:, 11:13, :2], axis=(0, 1))
    assert np.linalg.norm(hips - CAPTURE_CENTRE[:2]) < 0.5
