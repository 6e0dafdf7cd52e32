"""What a stream's ``start`` sets up before frames flow, and the capture-time rule of its frames.

Kept apart from ``connection.py`` (the connection's life) so that each reads on its own: the
reference rep a client sends, the database rows and background writer a recorded stream gets,
and the clock its frames' ``capture_ts`` must follow.
"""

from __future__ import annotations

import asyncio
import math

import numpy as np

from pose_analyzer.engine import reference_columns
from pose_analyzer.exercises.reference import ReferenceMotion
from pose_analyzer.schemas import StartMessage
from pose_analyzer.settings import PoseSettings
from pose_analyzer.storage import Database, SessionNotFoundError
from pose_analyzer.streaming.errors import InvalidCaptureTimeError
from pose_analyzer.streaming.recording import StreamRecording
from pose_analyzer.streaming.writer import RecordingWriter, RetryPolicy
from pose_analyzer.types import FrameCounts
from service_kit.errors import InvalidInputError

# Capture times are seconds of the client's clock; no clock in use counts past 1e12 s (31 700
# years), and beyond 2**53 a float cannot even tell consecutive seconds apart.
MAX_ABS_CAPTURE_TS = 1e12


def reference_of(message: StartMessage) -> ReferenceMotion | None:
    """The reference rep ``start`` carries, checked; None when it carries none.

    Raises:
        InvalidInputError: the series does not fit its angles or holds no usable values.
    """
    ref = message.reference_rep
    if ref is None:
        return None
    try:
        series = np.asarray(ref.series, dtype=np.float64)
        reference = ReferenceMotion(tuple(ref.angles), series, ref.tolerance_deg)
        reference_columns(reference)
    except ValueError as exc:
        raise InvalidInputError(f"invalid reference rep: {exc}", code="invalid_reference") from None
    return reference


async def open_recording(
    database: Database | None,
    settings: PoseSettings,
    stream_id: str,
    backend: str,
    message: StartMessage,
    session_id: str | None,
    counts: FrameCounts,
) -> tuple[StreamRecording | None, RecordingWriter | None]:
    """The stream's rows (opened in a thread) and its started background writer; (None, None)
    without a database or with ``settings.record_streams`` off.

    Raises:
        InvalidInputError: ``unknown_session`` when ``session_id`` names no session.
    """
    if database is None or not settings.record_streams:
        return None, None
    try:
        recording = await asyncio.to_thread(
            StreamRecording.open,
            database,
            stream_id,
            backend,
            message.exercise,
            session_id,
            counts,
            message.person_of_interest,
        )
    except SessionNotFoundError as exc:
        raise InvalidInputError(str(exc), code="unknown_session") from None
    retry = RetryPolicy(settings.stream_commit_attempts, settings.stream_commit_backoff_s)
    writer = RecordingWriter(recording, database, settings.stream_flush_interval_s, retry=retry)
    writer.start()
    return recording, writer


class CaptureClock:
    """The capture times of one stream's frames: finite, sane, never going backwards."""

    def __init__(self) -> None:
        self.last = -math.inf

    def take(self, capture_ts: float | None, received_ts: float) -> float:
        """The frame's capture time: the client's when it sent one, else the receive time.

        Raises:
            InvalidCaptureTimeError: not finite, beyond +-1e12 s, or earlier than the previous frame's.
        """
        if capture_ts is None:
            self.last = received_ts
            return received_ts
        if not math.isfinite(capture_ts) or abs(capture_ts) >= MAX_ABS_CAPTURE_TS:
            raise InvalidCaptureTimeError(
                f"capture_ts must be a finite number of seconds below {MAX_ABS_CAPTURE_TS:g} in size"
            )
        if capture_ts < self.last:
            raise InvalidCaptureTimeError(
                f"capture_ts went backwards ({capture_ts:.6f} s after {self.last:.6f} s); "
                "it must not decrease within a stream"
            )
        self.last = capture_ts
        return capture_ts
