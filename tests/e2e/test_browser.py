"""Headless Chromium with a fake camera (a real exercise clip) streams to a real pose_analyzer."""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.harness import StartService

CHROMIUM = Path("/usr/bin/chromium")
ANSWERS = 8
API_KEY = "browser-test-key"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs the Debian chromium package")


def processed_frames(base_url: str) -> float:
    """The service's total of processed frames, over all stream labels."""
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    values = re.findall(r"^pose_stream_frames_processed_total(?:\{[^}]*\})? (\S+)$", text, re.M)
    return sum(float(v) for v in values)


def fake_camera_clip(video: Path, out: Path) -> Path:
    """The first 3 s of ``video`` as 640x480, 15 fps y4m: the format Chromium's fake camera reads."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("needs ffmpeg to build the fake camera clip")
    subprocess.run(
        [
            *(ffmpeg, "-loglevel", "error", "-y", "-i", str(video)),
            *("-vf", "scale=640:480,format=yuv420p", "-r", "15", "-t", "3", str(out)),
        ],
        check=True,
        timeout=60,
    )
    return out


def test_page_streams_a_camera_and_draws_keypoints(
    start_service: StartService, test_data: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    clip = fake_camera_clip(test_data / "videos" / "bridging_1rep.mp4", tmp_path / "clip.y4m")
    service = start_service(
        "pose_analyzer",
        "POSE_",
        backend="mediapipe",
        database_url=f"sqlite:///{tmp_path}/pose.db",
        api_key=API_KEY,
    )
    before = processed_frames(service.url)
    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={clip}",
    ]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            console_errors: list[str] = []
            page.on("pageerror", lambda err: console_errors.append(str(err)))
            page.goto(f"{service.url}/?api_key={API_KEY}&exercise=glute_bridge")
            page.evaluate("window.poseReady")
            assert page.locator("#cameras input").count() >= 1
            assert page.locator("#exercise").input_value() == "glute_bridge"
            page.click("#start")
            page.wait_for_function(
                f"window.poseStats.answers >= {ANSWERS} && window.poseStats.lastKeypointsDrawn > 0",
                timeout=40_000,
            )
            stats = page.evaluate("window.poseStats")
            painted = page.evaluate(
                """() => {
                    const c = document.querySelector('canvas.overlay');
                    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                    let opaque = 0;
                    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) opaque += 1;
                    return {opaque, total: d.length / 4};
                }"""
            )
            status = page.locator(".stream .status").first.text_content() or ""
            page.screenshot(path=str(tmp_path / "page.png"))
            page.click("#stop")
            page.wait_for_function(
                "document.querySelector('.stream .status').dataset.state === 'closed'", timeout=15_000
            )
            final_status = page.locator(".stream .status").first.text_content() or ""
        finally:
            browser.close()

    assert console_errors == []
    assert stats["errors"] == []
    assert stats["exerciseSource"] == "service", "the page sent the API key to /api/exercises"
    assert stats["framesSent"] >= stats["answers"] >= ANSWERS
    assert stats["lastPeople"] >= 1
    assert stats["lastKeypointsDrawn"] >= 10, "a lying person shows most of the body to a side camera"
    assert 0 < painted["opaque"] < painted["total"], "the overlay holds a drawing, neither blank nor solid"
    assert status.startswith("streaming")
    assert final_status.startswith("stopped")
    assert processed_frames(service.url) - before >= ANSWERS
