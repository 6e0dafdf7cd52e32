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


async def test_a_stream_hands_over_its_newest_frame_when_a_replica_takes_its_batch() -> None:
    # Latest-frame-wins across the shared model: a frame that arrives while every replica is busy
    # replaces the waiting one, rather than the waiting one being analysed (and answered) late.
    gate = threading.Event()
    only = GatedDetector(gate)
    batcher = DetectionBatcher(only, window_s=0.0, max_batch=8)
    batcher.start()
    newest = {"frame": 10}
    taken: list[int] = []

    def take() -> Job:
        taken.append(newest["frame"])
        return Job(newest["frame"])

    try:
        busy = asyncio.ensure_future(batcher.submit(Job(1)))
        assert await asyncio.to_thread(only.entered.wait, 10)  # the one replica is busy
        waiting = asyncio.ensure_future(batcher.run(take))
        await asyncio.sleep(0.05)
        assert taken == []  # not taken while no replica is free
        newest["frame"] = 11  # a newer frame replaced it meanwhile
        gate.set()
        first, second = await asyncio.gather(busy, waiting)
    finally:
        gate.set()
        await batcher.close()
    assert taken == [11]
    assert only.batches == [[1], [11]]
    assert (first.people[0].score, second.people[0].score) == (1.0, 11.0)


async def test_a_take_that_fails_fails_its_request_alone() -> None:
    gate = threading.Event()
    gate.set()
    only = GatedDetector(gate)
    batcher = DetectionBatcher(only, window_s=0.05, max_batch=8)
    batcher.start()

    def broken() -> Job:
        raise ValueError("no frame")

    try:
        outcomes = await asyncio.gather(batcher.run(broken), batcher.submit(Job(3)), return_exceptions=True)
        failed, fine = outcomes
    finally:
        await batcher.close()
    assert isinstance(failed, ValueError)
    assert isinstance(fine, Detections)
    assert fine.people[0].score == 3.0
    assert only.batches == [[3]]
