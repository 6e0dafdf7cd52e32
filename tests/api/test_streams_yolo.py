"""Streams on the shared YOLO backend: frames of several streams go to the model as one batch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pose_analyzer.app import create_app
from pose_analyzer.settings import PoseSettings
from tests.api.test_streams import camera_frames, metric, stream_together

FRAMES = 5
# camera_frames takes every 3rd frame of the 30 fps clips: 10 fps capture times.
FRAME_S = 0.1
# YOLO's tracker confirms a person seen on 3 frames spanning 0.3 s (tracking.Confirmation):
# at 10 fps the 4th answer (index 3) is the first to carry people.
CONFIRMED_FROM = 3


@pytest.fixture(scope="module")
def cameras(test_data: Path) -> dict[str, list[bytes]]:
    return {f"cam0{i}": camera_frames(test_data / f"multicam/videos/cam0{i}.mp4", FRAMES) for i in (1, 2, 3)}


def test_streams_share_batches_of_one_yolo_model(tmp_path: Path, cameras: dict[str, list[bytes]]) -> None:
    # A wide window, so that frames of streams in lockstep land in one batch on a loaded machine.
    settings = PoseSettings(
        log_dir=tmp_path / "logs",
        backend="yolo",
        device="cpu",
        database_url=f"sqlite:///{tmp_path}/pose.db",
        stream_batch_window_ms=50,
        stream_max_batch=8,
        # Compute slots bound per-stream detectors only; here they must not cap the batches.
        stream_compute_slots=1,
    )
    with TestClient(create_app(settings)) as client:
        # The first stream sets up the shared model; the others then start together.
        with client.websocket_connect("/ws/streams/warmup") as ws:
            ws.send_bytes(cameras["cam01"][0])
            # One frame: the person is tentative (not yet confirmed), so not reported.
            assert ws.receive_json()["people"] == []
        answers = stream_together(client, cameras, FRAME_S)

        # A stream may still choose the per-stream backend.
        with client.websocket_connect("/ws/streams/solo") as ws:
            ws.send_text(json.dumps({"type": "start", "backend": "mediapipe"}))
            assert ws.receive_json()["backend"] == "mediapipe"
            ws.send_bytes(cameras["cam01"][0])
            assert ws.receive_json()["people"]
        text = client.get("/metrics").text

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
