"""The bare backend loop: what the service does per frame minus the WebSocket, JSON and database.

Per camera one detector and one ``PoseEngine`` (same tracker and exercise as a service stream);
each frame is ``decode_frame`` (the service's checked ``cv2.imdecode``) + ``detect_and_analyse``.
"""

from __future__ import annotations

import threading
import time

from _pose_service.frames import SEND_FPS
from pose_analyzer.detection.options import DetectorOptions
from pose_analyzer.detection.registry import build_detector, create_tracker
from pose_analyzer.engine import PoseEngine, detect_and_analyse
from pose_analyzer.settings import PoseSettings
from pose_analyzer.streaming.decode import decode_frame
from pose_analyzer.types import Frame

BARE_WARMUP = 10


def _bare_worker(
    clip: list[bytes],
    backend: str,
    exercise: str | None,
    seconds: float,
    start: threading.Barrier,
    counts: list[int],
) -> None:
    """Decode + detect + ``PoseEngine.analyse`` over ``clip`` (cycled): 10 warm-up frames, then timed.

    The timed phase begins when every worker is warm (``start``) and lasts ``seconds``;
    ``counts`` gets the number of frames done in it.
    """
    # The detector options the service builds from the same settings (weights, ONNX cache).
    detector = build_detector(backend, DetectorOptions.from_settings(PoseSettings(log_dir=None), "cpu"))
    detector.setup()
    try:
        engine = PoseEngine(tracker=create_tracker(backend), exercise=exercise)

        def step(i: int) -> None:
            detect_and_analyse(detector, engine, Frame(decode_frame(clip[i % len(clip)]), i / SEND_FPS, i))

        for i in range(BARE_WARMUP):
            step(i)
    except BaseException:
        start.abort()  # the other workers stop waiting for this one
        detector.close()
        raise
    try:
        start.wait(timeout=300)
        deadline = time.perf_counter() + seconds
        i = BARE_WARMUP
        while time.perf_counter() < deadline:
            step(i)
            i += 1
        counts.append(i - BARE_WARMUP)
    finally:
        detector.close()


def bare_fps(
    clips: list[list[bytes]], workers: int, backend: str, exercise: str | None, seconds: float
) -> float:
    """Frames per second of ``workers`` bare loops in threads, each on its own camera, all together.

    Raises:
        RuntimeError: a worker failed (its traceback is printed by the thread).
    """
    counts: list[int] = []
    start = threading.Barrier(workers)
    threads = [
        threading.Thread(
            target=_bare_worker, args=(clips[w % len(clips)], backend, exercise, seconds, start, counts)
        )
        for w in range(workers)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if len(counts) != workers:
        raise RuntimeError("a bare backend worker failed (see its traceback above)")
    return sum(counts) / seconds
