"""Headless Chromium: the page's 3D session parts against a real pose_analyzer with the shared
rig: the rig list, each stream's start message (camera i of the rig, joining the first stream's
session) and the rotatable skeleton of a real triangulated moment."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from tests.clips import encoded_frames
from tests.e2e.harness import StartService

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs the Debian chromium package")


def a_real_moment(base: str, test_data: Path) -> dict[str, Any]:
    """Stream the first frames of cam01 and cam02 as one 3D session; the last answer's pose3d."""
    frames = {
        cam: encoded_frames(test_data / f"multicam/videos/{cam}.mp4", 3, 480, 3) for cam in ("cam01", "cam02")
    }
    with connect(f"{base}/ws/streams/b3d-cam01") as first, connect(f"{base}/ws/streams/b3d-cam02") as second:
        first.send(json.dumps({"type": "start", "rig": "demo", "camera": "cam01"}))
        session = json.loads(first.recv(timeout=60))["session_id"]
        second.send(json.dumps({"type": "start", "rig": "demo", "camera": "cam02", "session_id": session}))
        assert json.loads(second.recv(timeout=60))["type"] == "started"
        moment = None
        for k in range(3):
            for ws, cam in ((first, "cam01"), (second, "cam02")):
                ts, data = frames[cam][k]
                ws.send(json.dumps({"type": "frame", "capture_ts": ts}))
                ws.send(data)
            answers = [json.loads(ws.recv(timeout=60)) for ws in (first, second)]
            assert answers[0]["pose3d"] == answers[1]["pose3d"]
            moment = answers[0]["pose3d"] or moment
    assert moment is not None
    return moment


def test_the_page_lists_rigs_joins_one_session_and_turns_the_3d_skeleton(
    start_service: StartService, test_data: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    service = start_service(
        "pose_analyzer", "POSE_", backend="mediapipe", database_url=f"sqlite:///{tmp_path}/pose.db"
    )
    qca = (test_data / "multicam/Calib.qca.txt").read_bytes()
    put = urllib.request.Request(
        f"{service.url}/api/rigs/demo", qca, {"Content-Type": "application/xml"}, method="PUT"
    )
    with urllib.request.urlopen(put, timeout=30) as resp:
        assert resp.status == 201
    moment = a_real_moment(service.url.replace("http://", "ws://"), test_data)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            console_errors: list[str] = []
            page.on("pageerror", lambda err: console_errors.append(str(err)))
            page.goto(f"{service.url}/?rig=demo")
            page.evaluate("window.poseReady")
            assert page.locator("#rig").input_value() == "demo"
            starts = page.evaluate(
                """async () => {
                    const starts = startMessages("squat", "demo", 3);
                    const first = await starts[0]();
                    const later = starts[2]();
                    starts.first({ session_id: "S1" });
                    return [first, await later, document.querySelector('#view3d-panel').hidden];
                }"""
            )
            canvas = page.locator("#view3d")
            drawn = page.evaluate("(m) => { window.view3d.update(m); return window.view3d.drawn; }", moment)
            pixels = "() => document.querySelector('#view3d').toDataURL()"
            before = page.evaluate(pixels)
            box = canvas.bounding_box()
            assert box is not None
            page.mouse.move(box["x"] + 100, box["y"] + 200)
            page.mouse.down()
            page.mouse.move(box["x"] + 300, box["y"] + 240, steps=5)
            page.mouse.up()
            turned = page.evaluate("[window.view3d.yaw, window.view3d.pitch]")
            after = page.evaluate(pixels)
        finally:
            browser.close()
    assert console_errors == []
    assert starts[0] == {"type": "start", "rig": "demo", "exercise": "squat", "camera": "cam01"}
    assert starts[1] == {
        "type": "start",
        "rig": "demo",
        "exercise": "squat",
        "camera": "cam03",
        "session_id": "S1",
    }
    assert starts[2] is False  # the 3D panel shows for a 3D session
    assert drawn == sum(p is not None for p in moment["keypoints"]) >= 12
    assert turned[0] == pytest.approx(-0.6 + 2.0, abs=0.05)  # 200 px right: 2 rad of yaw
    assert after != before
