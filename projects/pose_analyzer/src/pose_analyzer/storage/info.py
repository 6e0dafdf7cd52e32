"""What the repository's reads return: frozen dataclasses, valid after the ORM session closes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pose_analyzer.types import Fault


@dataclass(frozen=True, slots=True)
class StreamInfo:
    id: int
    session_id: str
    stream_id: str
    backend: str
    started_at: datetime
    ended_at: datetime | None
    frames_received: int
    frames_processed: int
    frames_dropped: int
    status: str
    close_reason: str | None


@dataclass(frozen=True, slots=True)
class SessionInfo:
    id: str
    created_at: datetime
    ended_at: datetime | None
    exercise: str | None
    status: str
    meta: dict[str, Any]
    streams: tuple[StreamInfo, ...]


@dataclass(frozen=True, slots=True)
class RepInfo:
    """A stored rep: ``start_s``/``end_s`` are seconds since its stream's first analysed frame."""

    stream_id: str
    track_id: int
    exercise: str
    index: int
    start_s: float
    end_s: float
    range_of_motion_deg: float
    tempo_s: float
    score: float  # NaN: no form rule could be measured
    faults: tuple[Fault, ...]


@dataclass(frozen=True, slots=True)
class FaultCount:
    code: str
    message: str
    count: int


@dataclass(frozen=True, slots=True)
class ExerciseSummary:
    """What one exercise of a session amounted to, over all its streams and tracks."""

    exercise: str
    reps: int
    mean_score: float | None  # None when no rep of it could be scored
    mean_tempo_s: float
    min_range_of_motion_deg: float
    mean_range_of_motion_deg: float
    max_range_of_motion_deg: float
    common_faults: tuple[FaultCount, ...]


@dataclass(frozen=True, slots=True)
class AnglePoint:
    """One second of one joint angle of one track: ``second`` counts from the stream's first frame."""

    stream_id: str
    track_id: int
    angle: str
    second: int
    mean_deg: float
    min_deg: float
    max_deg: float
    count: int
