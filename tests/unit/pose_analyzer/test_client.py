"""The camera client's pieces without a service: reconnection policy, URLs, sources, stats, stream ids."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.frames import Close
from websockets.http11 import Response

from pose_analyzer.client import ClientConfig, FrameSource, SourceError, StreamStats, retryable
from pose_analyzer.stream_cli import stream_ids


def closed(code: int, reason: str = "") -> ConnectionClosedError:
    return ConnectionClosedError(Close(code, reason), None)


def status(code: int) -> InvalidStatus:
    return InvalidStatus(Response(code, "x", Headers()))


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (closed(1012, "the service is restarting"), True),
        (closed(1013, "the service is shutting down and takes no new streams"), True),  # draining
        (closed(1011, "internal error"), True),
        (ConnectionClosedError(None, None), True),  # connection lost without a close frame (1006)
        (closed(1008, "stream 'a' is already streaming"), True),
        (closed(1008, "missing or wrong API key"), False),
        (closed(1003, "not an image"), False),
        (closed(1009, "frame too large"), False),
        (status(503), True),
        (status(502), True),
        (status(401), False),
        (ConnectionRefusedError(), True),
        (TimeoutError(), True),
        (ssl.SSLCertVerificationError("self-signed"), False),
    ],
)
def test_only_passing_failures_are_retried(exc: BaseException, expected: bool) -> None:
    assert retryable(exc) is expected


def test_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    config = ClientConfig("ws://h:1", backoff_s=0.1, max_backoff_s=1.0)
    for failures, ceiling in ((1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (30, 1.0)):
        waits = [config.backoff(failures) for _ in range(200)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits)
        assert max(waits) - min(waits) > ceiling / 10  # jitter: clients do not reconnect in step


def test_the_stream_url_carries_the_session_for_the_balancer() -> None:
    config = ClientConfig("wss://balancer:8443/", api_key="k")
    assert config.stream_url("front cam", None) == "wss://balancer:8443/ws/streams/front%20cam"
    assert config.stream_url("a", "s-1") == "wss://balancer:8443/ws/streams/a?session_id=s-1"
    assert config.headers() == {"X-API-Key": "k"}
    assert isinstance(config.ssl_context(), ssl.SSLContext)
    assert ClientConfig("ws://h:1").ssl_context() is None


def test_a_file_source_sends_every_nth_frame_downscaled_and_loops_on_its_clock(test_data: Path) -> None:
    clip = str(test_data / "videos/curl_3reps_starts_midrep.mp4")
    source = FrameSource(clip, max_width=160, every=3, loop=True)
    source.open()
    try:
        fps = source.fps
        frames = [source._next(None) for _ in range(400)]
    finally:
        source.close()
    assert all(f is not None for f in frames)
    times = [f.capture_ts for f in frames if f is not None]
    assert times == sorted(times)
    assert times[1] - times[0] == pytest.approx(1 / fps)
    import cv2
    import numpy as np

    first = frames[0]
    assert first is not None
    image = cv2.imdecode(np.frombuffer(first.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[1] == 160


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such video file"):
        FrameSource(str(tmp_path / "nope.mp4")).open()
    with pytest.raises(ValueError, match="jpeg_quality"):
        FrameSource("0", jpeg_quality=0)


def test_stats_count_answers_reps_and_the_outage_they_end() -> None:
    stats = StreamStats("front")
    stats.on_connected(0, "r1")
    stats.on_sent(1)
    stats.on_sent(2)
    rep = {"index": 1, "start_s": 1.0, "end_s": 2.0, "score": 90.0, "faults": [{"code": "shallow"}]}
    # The rep frame's answer does not announce the rep: its count leaves it out.
    stats.on_answer(
        {"frame_id": 2, "dropped": 1, "rep_count": 0, "latency_ms": 12.5, "people": [{"track_id": 1}]},
        "s",
    )
    assert (stats.answered, stats.dropped, stats.rep_count, stats.reps) == (1, 1, 0, [])
    stats.on_rep(
        {
            "type": "rep",
            "frame_id": 2,
            "track_id": 1,
            "rep": rep,
            "person_rep_count": 1,
            "rep_count": 1,
            "latency_ms": 42.5,
            "commit_ms": 7.5,
        },
        "s",
    )
    assert (stats.answered, stats.rep_count, stats.last_score, stats.faults) == (1, 1, 90.0, 1)
    assert stats.reps[0].session_id == "s"
    assert stats.reps[0].track_id == 1
    assert len(stats.rep_latencies_ms) == len(stats.rep_frame_latencies_ms) == 1
    # send -> announcement covers send -> the frame's answer
    assert stats.rep_latencies_ms[0] >= stats.rep_frame_latencies_ms[0]
    assert stats.rep_service_ms == [42.5]  # the service's own arrival -> announcement of the rep
    assert stats.rep_commit_wait_ms == [7.5]
    stats.on_lost("connection lost (1006)")
    stats.on_lost("ConnectionRefusedError")
    stats.on_connected(1, "r2")
    stats.on_sent(3)
    stats.on_answer({"frame_id": 3, "rep_count": 1, "people": []}, "s")
    assert (stats.reconnects, stats.failed_attempts, len(stats.outages_s)) == (1, 2, 1)
    assert stats.replicas == ["r1", "r2"]


def test_stats_count_each_rep_of_a_frame_once_and_its_frame_once() -> None:
    stats = StreamStats("front")
    stats.on_connected(0)
    stats.on_sent(1)
    stats.on_answer({"frame_id": 1, "rep_count": 0, "people": []}, None)
    rep = {"index": 1, "start_s": 0.0, "end_s": 1.0, "score": None, "faults": []}
    for track in (1, 2):
        stats.on_rep({"frame_id": 1, "track_id": track, "rep": rep, "rep_count": 1, "latency_ms": 5.0}, None)
    assert [r.track_id for r in stats.reps] == [1, 2]
    assert (len(stats.rep_latencies_ms), len(stats.rep_frame_latencies_ms)) == (2, 1)
    assert stats.rep_commit_wait_ms == []  # not recorded: no commit


def test_stream_ids_are_file_stems_or_camera_numbers_and_unique(tmp_path: Path) -> None:
    clip = tmp_path / "front view.mp4"
    clip.write_bytes(b"")
    assert stream_ids([str(clip), "0", str(clip), "rtsp://x/y"]) == [
        "front_view",
        "cam2",
        "front_view-2",
        "cam4",
    ]
