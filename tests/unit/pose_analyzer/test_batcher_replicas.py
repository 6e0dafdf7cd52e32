"""The shared batched path keeps every replica of its model busy (benchmarks/pose_service.py
--backend yolo): frames that wait together are shared among the replicas free at the time."""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from pose_analyzer.detection.batcher import DetectionBatcher
from pose_analyzer.types import Detections, Frame, Person


class GatedDetector:
    """Records the batches it gets and holds each inside ``detect`` until the gate opens."""

    name = "gated"

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate
        self.batches: list[list[int]] = []
        self.entered = threading.Event()

    def setup(self) -> None:
        return None

    def detect(self, frames: list[Frame]) -> list[Detections]:
        self.batches.append([f.index for f in frames])
        self.entered.set()
        assert self.gate.wait(10)
        box = (0.0, 0.0, 1.0, 1.0)
        return [Detections([Person(np.zeros((21, 3), np.float32), box, float(f.index))]) for f in frames]

    def close(self) -> None:
        return None


class Job:
    """A FrameJob with a ready-made frame; its result is the detections."""

    def __init__(self, index: int) -> None:
        self.index = index

    def decode(self) -> Frame:
        return Frame(np.zeros((4, 4, 3), np.uint8), timestamp=float(self.index), index=self.index)

    def finish(self, frame: Frame, detections: Detections) -> Detections:
        return detections


async def test_frames_waiting_together_are_shared_among_the_free_replicas() -> None:
    # Four streams answered together send their next frames together: with two replicas free,
    # each gets half of them and both run at once (one replica taking all four left the other idle).
    gate = threading.Event()
    first, second = GatedDetector(gate), GatedDetector(gate)
    batcher = DetectionBatcher(first, window_s=0.05, max_batch=8, replicas=[second])
    batcher.start()
    try:
        answers = asyncio.gather(*(batcher.submit(Job(i)) for i in range(1, 5)))
        # Both replicas are inside detect() at the same time (each waits for the gate).
        assert await asyncio.to_thread(first.entered.wait, 10)
        assert await asyncio.to_thread(second.entered.wait, 10)
        gate.set()
        results = await answers
    finally:
        gate.set()
        await batcher.close()
    assert (first.batches, second.batches) == ([[1, 2]], [[3, 4]])
    assert [r.people[0].score for r in results] == [1.0, 2.0, 3.0, 4.0]


async def test_a_single_frame_goes_to_one_replica_and_leaves_the_other_free() -> None:
    gate = threading.Event()
    gate.set()
    first, second = GatedDetector(gate), GatedDetector(gate)
    batcher = DetectionBatcher(first, window_s=0.0, max_batch=8, replicas=[second])
    batcher.start()
    try:
        for i in range(1, 4):  # one stream: one frame at a time
            assert (await batcher.submit(Job(i))).people[0].score == float(i)
    finally:
        await batcher.close()
    assert sorted(i for b in first.batches + second.batches for i in b) == [1, 2, 3]
    assert all(len(b) == 1 for b in first.batches + second.batches)
