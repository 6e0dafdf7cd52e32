"""The bare backend loop: what the service does per frame minus the WebSocket, JSON and database.

A stream is what a service stream holds: one ``PoseEngine`` (same tracker and exercise), and for a
per-stream backend (MediaPipe: a stateful landmarker) its own detector; a batched backend (YOLO)
has one model per worker thread that its streams share, as the service's streams share a model.
Each frame is ``decode_frame`` (the service's checked ``cv2.imdecode``) + ``detect_and_analyse``.
A worker thread owns some of the streams and analyses one frame of each in turn.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from _pose_service.frames import SEND_FPS
from pose_analyzer.detection.base import Detector
from pose_analyzer.detection.options import DetectorOptions
from pose_analyzer.detection.registry import backend_spec, build_detector, create_tracker
from pose_analyzer.engine import PoseEngine, detect_and_analyse
from pose_analyzer.settings import PoseSettings
from pose_analyzer.streaming.decode import decode_frame
from pose_analyzer.types import Frame

BARE_WARMUP = 10


@dataclass
class _Stream:
    clip: list[bytes]
    detector: Detector
    engine: PoseEngine
    index: int = 0

    def step(self) -> None:
        image = decode_frame(self.clip[self.index % len(self.clip)])
        detect_and_analyse(self.detector, self.engine, Frame(image, self.index / SEND_FPS, self.index))
        self.index += 1


def _bare_worker(
    clips: list[list[bytes]],
    backend: str,
    exercise: str | None,
    seconds: float,
    start: threading.Barrier,
    counts: list[int],
) -> None:
    """One frame of each of ``clips``' streams in turn: 10 warm-up frames a stream, then timed.

    The timed phase begins when every worker is warm (``start``) and lasts ``seconds``;
    ``counts`` gets the number of frames done in it.
    """
    # The detector options the service builds from the same settings (weights, ONNX cache).
    options = DetectorOptions.from_settings(PoseSettings(log_dir=None), "cpu")
    shared = backend_spec(backend).batches
    detectors: list[Detector] = []

    def detector() -> Detector:
        if not shared or not detectors:
            detectors.append(build_detector(backend, options))
            detectors[-1].setup()
        return detectors[-1]

    try:
        try:
            streams = [
                _Stream(clip, detector(), PoseEngine(tracker=create_tracker(backend), exercise=exercise))
                for clip in clips
            ]
            for _ in range(BARE_WARMUP):
                for stream in streams:
                    stream.step()
        except BaseException:
            start.abort()  # the other workers stop waiting for this one
            raise
        start.wait(timeout=300)
        deadline = time.perf_counter() + seconds
        done = 0
        while time.perf_counter() < deadline:
            streams[done % len(streams)].step()
            done += 1
        counts.append(done)
    finally:
        for d in detectors:
            d.close()


def bare_fps(
    clips: list[list[bytes]],
    streams: int,
    workers: int,
    backend: str,
    exercise: str | None,
    seconds: float,
) -> float:
    """Frames per second of ``streams`` streams (stream ``i`` on camera ``i % len(clips)``) spread
    over ``workers`` threads (at most one per stream), all together.

    Raises:
        RuntimeError: a worker failed (its traceback is printed by the thread).
    """
    workers = max(1, min(workers, streams))
    counts: list[int] = []
    start = threading.Barrier(workers)
    threads = [
        threading.Thread(
            target=_bare_worker,
            args=(
                [clips[s % len(clips)] for s in range(w, streams, workers)],
                backend,
                exercise,
                seconds,
                start,
                counts,
            ),
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
