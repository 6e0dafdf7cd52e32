"""Streams on the shared YOLO backend: frames of several streams go to the model as one batch;
as one 3D session, the people of the cameras are associated and keep their 3D ids."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pose_analyzer.app import create_app
from pose_analyzer.settings import PoseSettings
from pose_analyzer.storage import start_session
from tests.api.test_streams import camera_frames, database, metric, stream_together

FRAMES = 5
FRAMES_3D = 8
# camera_frames takes every 3rd frame of the 30 fps clips: 10 fps capture times.
FRAME_S = 0.1
# YOLO's tracker confirms a person seen on 3 frames spanning 0.3 s (tracking.Confirmation):
# at 10 fps the 4th answer (index 3) is the first to carry people.
CONFIRMED_FROM = 3


def _settings(tmp_path: Path, **extra: Any) -> PoseSettings:
    """YOLO on CPU with a wide window, so that frames of streams in lockstep would land in one
    batch on a loaded machine."""
    return PoseSettings(
        log_dir=tmp_path / "logs",
        backend="yolo",
        device="cpu",
        database_url=f"sqlite:///{tmp_path}/pose.db",
        stream_batch_window_ms=50,
        # Compute slots bound per-stream detectors only; here they must not cap the batches.
        stream_compute_slots=1,
        **extra,
    )


@pytest.fixture(scope="module")
def cameras(test_data: Path) -> dict[str, list[bytes]]:
    return {
        f"cam0{i}": camera_frames(test_data / f"multicam/videos/cam0{i}.mp4", FRAMES_3D) for i in (1, 2, 3)
    }


def test_streams_share_batches_of_one_yolo_model(
    tmp_path: Path, cameras: dict[str, list[bytes]], test_data: Path
) -> None:
    with TestClient(create_app(_settings(tmp_path, stream_max_batch=8))) as client:
        # The first stream sets up the shared model; the others then start together.
        with client.websocket_connect("/ws/streams/warmup") as ws:
            ws.send_bytes(cameras["cam01"][0])
            # One frame: the person is tentative (not yet confirmed), so not reported.
            assert ws.receive_json()["people"] == []
        answers = stream_together(client, {k: v[:FRAMES] for k, v in cameras.items()}, FRAME_S)

        # A stream may still choose the per-stream backend.
        with client.websocket_connect("/ws/streams/solo") as ws:
            ws.send_text(json.dumps({"type": "start", "backend": "mediapipe"}))
            assert ws.receive_json()["backend"] == "mediapipe"
            ws.send_bytes(cameras["cam01"][0])
            assert ws.receive_json()["people"]
        text = client.get("/metrics").text
        pose3d, series = _session_3d(client, cameras, test_data)

    for name, got in answers.items():
        assert [a["frame_id"] for a in got] == list(range(1, FRAMES + 1))
        assert not any(a["people"] for a in got[: CONFIRMED_FROM - 1]), name
        assert all(a["people"] for a in got[CONFIRMED_FROM:]), name
        assert all(len(a["people"][0]["keypoints"]) >= 17 for a in got[CONFIRMED_FROM:])
    batched_frames = 1 + len(cameras) * FRAMES
    assert metric(text, "pose_stream_batch_size_frames_sum") == batched_frames
    # Fewer detector calls than frames: some calls carried frames of several streams.
    assert metric(text, "pose_stream_batch_size_frames_count") < batched_frames
    assert metric(text, "pose_stream_inference_seconds_count", backend="yolo") == metric(
        text, "pose_stream_batch_size_frames_count"
    )

    # The 3D session: besides the athlete (seen by the three cameras), YOLO sees an operator
    # standing behind him in cam01 and cam02; each is one 3D person with one id throughout.
    assert pose3d[:CONFIRMED_FROM] == [None] * CONFIRMED_FROM
    for moment in pose3d[CONFIRMED_FROM:]:
        assert moment is not None
        assert moment["person_id"] == 0
        people = {p["id"]: p for p in moment["people"]}
        assert sorted(people) == [0, 1]
        assert len(people[0]["cameras"]) >= 2
        assert people[1]["cameras"] == ["cam01", "cam02"]
        assert all(p["reprojection_mean_px"] <= 15.0 for p in people.values())
        assert moment["keypoints"] == people[0]["keypoints"]
    stored = series["moments"]
    assert len(stored) == FRAMES_3D - CONFIRMED_FROM
    assert all(m["person_id"] == 0 and [o["id"] for o in m["others"]] == [1] for m in stored)


def _session_3d(
    client: TestClient, cameras: dict[str, list[bytes]], test_data: Path
) -> tuple[list[dict[str, Any] | None], dict[str, Any]]:
    """The same clips as one 3D session of the shared rig: cam01's ``pose3d`` answers and the
    session's stored series."""
    qca = (test_data / "multicam/Calib.qca.txt").read_bytes()
    assert (
        client.put("/api/rigs/demo", content=qca, headers={"content-type": "application/xml"}).status_code
        == 201
    )
    with database(client).session() as db:
        session = start_session(db, meta={"rig": "demo"})
    starts = {cam: {"type": "start", "session_id": session, "rig": "demo", "camera": cam} for cam in cameras}
    answers = stream_together(client, cameras, FRAME_S, starts)
    series = client.get(f"/api/sessions/{session}/3d")  # stored before each stream's "stopped"
    assert series.status_code == 200, series.text
    return [a["pose3d"] for a in answers["cam01"]], series.json()


def test_on_cpu_the_shared_model_takes_one_frame_per_call_by_default(
    tmp_path: Path, cameras: dict[str, list[bytes]]
) -> None:
    """On CPU a batch costs as much per frame as single frames, so the default (``stream_max_batch``
    0) sends each frame alone even within a wide window that would batch streams in lockstep."""
    with TestClient(create_app(_settings(tmp_path))) as client:
        answers = stream_together(client, {k: v[:3] for k, v in cameras.items()}, FRAME_S)
        text = client.get("/metrics").text
    assert all(len(got) == 3 for got in answers.values()), answers
    frames = len(cameras) * 3
    assert metric(text, "pose_stream_batch_size_frames_sum") == frames
    assert metric(text, "pose_stream_batch_size_frames_count") == frames
