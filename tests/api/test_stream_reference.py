"""A stream scores its reps against the reference rep of its start message (real curl clip)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from pose_analyzer.app import create_app
from pose_analyzer.exercises.reference import PHASES
from pose_analyzer.settings import PoseSettings
from tests.api.stream_messages import next_answer
from tests.api.test_sessions_api import clip_frames

ELBOWS = 165.0 - 120.0 * np.sin(np.linspace(0.0, np.pi, 40))  # 165 -> 45 -> 165
REFERENCE = {"angles": ["left_elbow", "right_elbow"], "series": np.stack([ELBOWS, ELBOWS], 1).tolist()}


def test_stream_reps_are_compared_with_the_reference(tmp_path: Path, test_data: Path) -> None:
    settings = PoseSettings(
        log_dir=tmp_path / "logs", backend="mediapipe", database_url=f"sqlite:///{tmp_path}/p.db"
    )
    frames = clip_frames(test_data / "videos/curl_3reps_starts_midrep.mp4")
    with TestClient(create_app(settings)) as client, client.websocket_connect("/ws/streams/curl") as ws:
        start = {"type": "start", "exercise": "biceps_curl", "reference_rep": REFERENCE}
        ws.send_text(json.dumps(start))
        assert ws.receive_json()["type"] == "started"
        announced: list[dict[str, Any]] = []
        for frame_id, (capture_ts, data) in enumerate(frames):
            ws.send_text(json.dumps({"type": "frame", "frame_id": frame_id, "capture_ts": capture_ts}))
            ws.send_bytes(data)
            assert next_answer(ws, announced)["type"] == "frame"
        ws.send_text(json.dumps({"type": "stop"}))
        stopped = next_answer(ws, announced)
    reps = [m["rep"] for m in announced]
    assert len(reps) == stopped["rep_count"] == 3
    for rep in reps:
        assert 0 <= rep["reference"]["score"] <= 100
        # A side view: the far elbow may be hidden, and is then not compared.
        assert rep["reference"]["per_angle_deg"]
        assert set(rep["reference"]["per_angle_deg"]) <= {"left_elbow", "right_elbow"}
        assert rep["reference"]["worst_phase"] in PHASES
    assert [r["reference"] for r in stopped["reps"]] == [r["reference"] for r in reps]


def test_a_reference_with_an_unknown_angle_is_refused(tmp_path: Path) -> None:
    settings = PoseSettings(
        log_dir=tmp_path / "logs", backend="mediapipe", database_url=f"sqlite:///{tmp_path}/p.db"
    )
    bad = {**REFERENCE, "angles": ["left_tail", "right_elbow"]}
    with TestClient(create_app(settings)) as client, client.websocket_connect("/ws/streams/x") as ws:
        ws.send_text(json.dumps({"type": "start", "exercise": "biceps_curl", "reference_rep": bad}))
        answer = ws.receive_json()
    assert answer["type"] == "error"
    assert answer["error"]["code"] == "invalid_reference"
    assert "left_tail" in answer["error"]["message"]
