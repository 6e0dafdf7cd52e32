"""Latest-frame-wins slot, cross-stream batcher, frame decoding and the slow-client policy."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from pose_analyzer.detection.batcher import DetectionBatcher
from pose_analyzer.detection.options import DetectorOptions
from pose_analyzer.detection.paths import PerStreamPath
from pose_analyzer.engine import PoseEngine
from pose_analyzer.metrics import OTHER_STREAMS, StreamMetrics
from pose_analyzer.schemas import FrameResult
from pose_analyzer.settings import PoseSettings
from pose_analyzer.streaming.connection import StreamConnection
from pose_analyzer.streaming.decode import decode_frame
from pose_analyzer.streaming.errors import UnsupportedFrameError
from pose_analyzer.streaming.hub import StreamHub
from pose_analyzer.streaming.session import RawFrame, StreamSession
from pose_analyzer.streaming.slot import LatestSlot, SlotClosedError
from pose_analyzer.types import Detections, Frame, Person


async def test_slot_hands_out_the_newest_item_and_counts_the_replaced() -> None:
    slot: LatestSlot[int] = LatestSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True
    assert slot.put(3) is True
    assert await slot.take() == (3, 2)
    slot.put(4)
    assert await slot.take() == (4, 0)


async def test_slot_take_waits_for_a_put() -> None:
    slot: LatestSlot[str] = LatestSlot()
    waiter = asyncio.ensure_future(slot.take())
    await asyncio.sleep(0)
    assert not waiter.done()
    slot.put("frame")
    assert await asyncio.wait_for(waiter, 5) == ("frame", 0)


async def test_closed_slot_gives_its_last_item_then_raises() -> None:
    slot: LatestSlot[int] = LatestSlot()
    slot.put(7)
    slot.close()
    with pytest.raises(SlotClosedError):
        slot.put(8)
    assert await slot.take() == (7, 0)
    with pytest.raises(SlotClosedError):
        await slot.take()


async def test_close_wakes_a_waiting_take() -> None:
    slot: LatestSlot[int] = LatestSlot()
    waiter = asyncio.ensure_future(slot.take())
    await asyncio.sleep(0)
    slot.close()
    with pytest.raises(SlotClosedError):
        await asyncio.wait_for(waiter, 5)


class RecordingDetector:
    """A batched detector that records the batches it gets; frames with index < 0 make it fail."""

    name = "recording"

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.batches: list[list[int]] = []
        self.threads: set[str] = set()
        self.entered = threading.Event()
        self.gate = gate

    def setup(self) -> None:
        return None

    def detect(self, frames: list[Frame]) -> list[Detections]:
        self.threads.add(threading.current_thread().name)
        self.batches.append([f.index for f in frames])
        self.entered.set()
        if any(f.index < 0 for f in frames):
            raise ValueError("bad frame")
        if self.gate is not None:
            assert self.gate.wait(10)
        box = (0.0, 0.0, 1.0, 1.0)
        return [Detections([Person(np.zeros((21, 3), np.float32), box, float(f.index))]) for f in frames]

    def close(self) -> None:
        return None


def frame(index: int) -> Frame:
    return Frame(np.zeros((4, 4, 3), np.uint8), timestamp=float(index), index=index)


class Job:
    """A FrameJob whose frame is ready-made; it notes the thread it was decoded and finished in."""

    def __init__(self, index: int, fail_decode: bool = False) -> None:
        self.index = index
        self.fail_decode = fail_decode
        self.threads: list[str] = []

    def decode(self) -> Frame:
        self.threads.append(threading.current_thread().name)
        if self.fail_decode:
            raise UnsupportedFrameError("not an image")
        return frame(self.index)

    def finish(self, frame: Frame, detections: Detections) -> Detections:
        self.threads.append(threading.current_thread().name)
        return detections


async def test_batcher_groups_frames_of_several_streams_and_answers_each() -> None:
    detector = RecordingDetector()
    observed: list[int] = []
    batcher = DetectionBatcher(detector, window_s=0.05, max_batch=8, observe=lambda n, _s: observed.append(n))
    batcher.start()
    try:
        results = await asyncio.gather(*(batcher.submit(Job(i)) for i in range(1, 5)))
    finally:
        await batcher.close()
    assert [r.people[0].score for r in results] == [1.0, 2.0, 3.0, 4.0]
    assert detector.batches == [[1, 2, 3, 4]]
    assert observed == [4]
    assert len(detector.threads) == 1
    assert threading.current_thread().name not in detector.threads


async def test_a_batched_frame_is_decoded_detected_and_finished_in_one_worker_hop() -> None:
    detector = RecordingDetector()
    batcher = DetectionBatcher(detector, window_s=0.05, max_batch=8)
    batcher.start()
    jobs = [Job(i) for i in range(1, 4)]
    try:
        await asyncio.gather(*(batcher.submit(job) for job in jobs))
    finally:
        await batcher.close()
    (worker,) = detector.threads
    assert all(job.threads == [worker, worker] for job in jobs)


async def test_batcher_respects_max_batch() -> None:
    detector = RecordingDetector()
    batcher = DetectionBatcher(detector, window_s=0.05, max_batch=3)
    batcher.start()
    try:
        await asyncio.gather(*(batcher.submit(Job(i)) for i in range(1, 8)))
    finally:
        await batcher.close()
    assert [len(b) for b in detector.batches] == [3, 3, 1]
    assert sorted(i for b in detector.batches for i in b) == list(range(1, 8))


async def test_a_failing_frame_fails_only_its_own_request() -> None:
    detector = RecordingDetector()
    batcher = DetectionBatcher(detector, window_s=0.05, max_batch=8)
    batcher.start()
    try:
        results = await asyncio.gather(
            batcher.submit(Job(1)),
            batcher.submit(Job(-1)),
            batcher.submit(Job(2)),
            batcher.submit(Job(3, fail_decode=True)),
            return_exceptions=True,
        )
    finally:
        await batcher.close()
    assert isinstance(results[1], ValueError)
    assert isinstance(results[3], UnsupportedFrameError)
    assert [r.people[0].score for r in (results[0], results[2])] == [1.0, 2.0]  # type: ignore[union-attr]


async def test_frames_arriving_during_a_batch_form_the_next_one() -> None:
    gate = threading.Event()
    detector = RecordingDetector(gate)
    batcher = DetectionBatcher(detector, window_s=0.0, max_batch=8)
    batcher.start()
    try:
        first = asyncio.ensure_future(batcher.submit(Job(1)))
        assert await asyncio.to_thread(detector.entered.wait, 10)  # the first batch is in the detector
        rest = [asyncio.ensure_future(batcher.submit(Job(i))) for i in (2, 3)]
        while batcher.pending < 2:  # both wait for the next batch while the first is in the detector
            await asyncio.sleep(0)
        gate.set()
        await first
        rest = await asyncio.gather(*rest)
    finally:
        await batcher.close()
    assert detector.batches == [[1], [2, 3]]
    assert len(rest) == 2


async def test_a_second_replica_takes_the_next_batch_while_the_first_is_busy() -> None:
    gate = threading.Event()
    busy, spare = RecordingDetector(gate), RecordingDetector()
    batcher = DetectionBatcher(busy, window_s=0.0, max_batch=8, replicas=[spare])
    batcher.start()
    try:
        first = asyncio.ensure_future(batcher.submit(Job(1)))
        assert await asyncio.to_thread(busy.entered.wait, 10)
        # The first replica is stuck inside detect(); the next frame is answered by the other.
        second = await asyncio.wait_for(batcher.submit(Job(2)), 10)
        assert not first.done()
        gate.set()
        await first
    finally:
        await batcher.close()
    assert (busy.batches, spare.batches) == ([[1]], [[2]])
    assert second.people[0].score == 2.0
    assert busy.threads.isdisjoint(spare.threads)


async def test_batcher_refuses_work_when_not_running() -> None:
    batcher = DetectionBatcher(RecordingDetector())
    with pytest.raises(RuntimeError, match="not running"):
        await batcher.submit(Job(1))
    with pytest.raises(ValueError, match="max_batch"):
        DetectionBatcher(RecordingDetector(), max_batch=0)


def test_decode_accepts_whole_jpeg_and_png_and_refuses_the_rest(test_data: Path) -> None:
    image = cv2.imread(str(test_data / "images/zidane.jpg"))
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    png = cv2.imencode(".png", image[:64, :64])[1].tobytes()
    assert decode_frame(jpeg).shape == image.shape
    assert decode_frame(png).shape == (64, 64, 3)
    for data, reason in (
        (jpeg[: len(jpeg) // 2], "truncated JPEG"),
        (png[:-20], "truncated PNG"),
        (b"GIF89a" + b"\0" * 20, "JPEG or PNG"),
        (b"", "JPEG or PNG"),
        (b"\xff\xd8\xff" + b"\0" * 100 + b"\xff\xd9", "could not be decoded"),
    ):
        with pytest.raises(UnsupportedFrameError, match=reason) as err:
            decode_frame(data)
        assert err.value.close_code == 1003


def test_stream_label_is_bounded() -> None:
    metrics = StreamMetrics(CollectorRegistry(), max_stream_labels=2)
    assert [metrics.stream_label(s) for s in ("a", "b", "a", "c", "d")] == [
        "a",
        "b",
        "a",
        OTHER_STREAMS,
        OTHER_STREAMS,
    ]


class StuckClient:
    """A client that sends one frame and then never reads: every send blocks."""

    def __init__(self, frame: bytes) -> None:
        self.frames = [frame]
        self.closed: tuple[int, str] | None = None
        self.sent = 0

    async def receive(self) -> str | bytes | None:
        if self.frames:
            return self.frames.pop()
        await asyncio.Event().wait()  # the client stays connected, silent
        return None

    async def send_text(self, text: str) -> None:
        self.sent += 1
        await asyncio.Event().wait()

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


async def test_a_client_that_never_reads_is_closed_with_1008(tmp_path: Path, test_data: Path) -> None:
    settings = PoseSettings(log_dir=tmp_path, backend="mediapipe", stream_send_timeout_s=0.3)
    registry = CollectorRegistry()
    hub = StreamHub(
        settings, StreamMetrics(registry), "mediapipe", DetectorOptions.from_settings(settings, "cpu")
    )
    image = cv2.imread(str(test_data / "images/mediapipe_pose_test_image.jpg"))
    client = StuckClient(cv2.imencode(".jpg", image)[1].tobytes())
    connection = StreamConnection(hub, settings, None, "stuck", client)
    await asyncio.wait_for(connection.serve(authorised=True), 60)
    await hub.close()
    assert client.sent == 1
    assert client.closed is not None
    assert client.closed[0] == 1008
    assert "did not read" in client.closed[1]
    assert registry.get_sample_value("pose_stream_websocket_errors_total", {"reason": "slow_client"}) == 1
    assert hub.active == 0


class CountingDetector:
    """A per-stream detector that takes ``delay_s`` per frame and records how many run at once."""

    name = "counting"

    def __init__(self, gauge: dict[str, int], gate: threading.Event | None = None) -> None:
        self.gate = gate
        self.entered = threading.Event()
        self.gauge = gauge
        self.seen: list[int] = []
        self._lock = threading.Lock()

    def setup(self) -> None:
        return None

    def detect(self, frames: list[Frame]) -> list[Detections]:
        with self._lock:
            self.gauge["now"] += 1
            self.gauge["max"] = max(self.gauge["max"], self.gauge["now"])
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        with self._lock:
            self.gauge["now"] -= 1
        self.seen.extend(f.index for f in frames)
        return [Detections() for _ in frames]

    def close(self) -> None:
        return None


def _session(stream_id: str, detector: CountingDetector, compute: asyncio.Semaphore) -> StreamSession:
    path = PerStreamPath("mediapipe", DetectorOptions(), compute, lambda _s: None)
    handle = path.own(detector)
    metrics = StreamMetrics(CollectorRegistry())
    return StreamSession(stream_id, PoseEngine(), handle, metrics)


def _raw(frame_id: int) -> RawFrame:
    jpeg = cv2.imencode(".jpg", np.full((32, 32, 3), 128, np.uint8))[1].tobytes()
    return RawFrame(jpeg, frame_id, capture_ts=0.0, received_ts=0.0, received_perf=0.0)


@pytest.mark.parametrize("slots", [1, 2])
async def test_compute_slots_bound_the_frames_in_analysis_across_streams(slots: int) -> None:
    gauge = {"now": 0, "max": 0}
    compute = asyncio.Semaphore(slots)
    gate = threading.Event()
    detectors = [CountingDetector(gauge, gate) for _ in range(3)]
    sessions = [_session(f"cam{i}", d, compute) for i, d in enumerate(detectors)]
    answers: list[str] = []

    async def send(text: str) -> None:
        answers.append(text)

    runs = [asyncio.ensure_future(s.run(send)) for s in sessions]
    for session in sessions:
        session.offer(_raw(1))
    for session in sessions:
        session.slot.close()
    # Wait until as many frames as there are slots are inside a detector, then let them all go.
    for detector in detectors[:slots]:
        assert await asyncio.to_thread(detector.entered.wait, 10)
    gate.set()
    await asyncio.wait_for(asyncio.gather(*runs), 10)
    assert len(answers) == 3
    assert gauge["max"] == slots


async def test_a_stream_waiting_for_a_slot_answers_its_newest_frame() -> None:
    gauge = {"now": 0, "max": 0}
    compute = asyncio.Semaphore(1)
    gate = threading.Event()
    busy_detector = CountingDetector(gauge, gate)
    busy = _session("busy", busy_detector, compute)
    waiting_detector = CountingDetector(gauge)
    waiting = _session("waiting", waiting_detector, compute)
    answers: list[FrameResult] = []

    async def send(text: str) -> None:
        answers.append(FrameResult.model_validate_json(text))

    runs = [asyncio.ensure_future(busy.run(send)), asyncio.ensure_future(waiting.run(send))]
    busy.offer(_raw(1))
    assert await asyncio.to_thread(busy_detector.entered.wait, 10)  # busy holds the only slot
    waiting.offer(_raw(1))
    waiting.offer(_raw(2))  # replaces frame 1 while the stream waits for the slot
    gate.set()
    busy.slot.close()
    waiting.slot.close()
    await asyncio.wait_for(asyncio.gather(*runs), 10)
    assert waiting_detector.seen == [2]
    mine = [a for a in answers if a.stream_id == "waiting"]
    assert [(a.frame_id, a.dropped) for a in mine] == [(2, 1)]
    assert waiting.counts.dropped == 1
