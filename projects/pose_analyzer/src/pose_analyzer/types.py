"""Plain data passed between the pose engine's stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from pose_analyzer.cuts import CutSample
    from pose_analyzer.exercises.reference import ReferenceComparison


@dataclass(slots=True)
class Person:
    """One person in one frame.

    ``keypoints`` is (NUM_KEYPOINTS, 3) float32 in the layout of ``keypoints.py``
    (pixels, confidence).  ``box`` is (x1, y1, x2, y2) in pixels.  ``track_id`` is set
    by the tracker (``None`` before tracking).  ``native`` keeps the backend's own
    output (MediaPipe: 33x4 normalized x, y, z, visibility; YOLO: 17x3 pixels) for
    tests and for users who want it.
    """

    keypoints: npt.NDArray[np.float32]
    box: tuple[float, float, float, float]
    score: float
    track_id: int | None = None
    native: npt.NDArray[np.float32] | None = None


@dataclass(slots=True)
class Frame:
    """A decoded frame (BGR uint8, as OpenCV reads it) and when it was captured, in seconds.

    ``cut_sample`` is the cut test's sample of ``image`` (``cuts.cut_sample``), taken where the
    frame is decoded, while the image is still in the CPU's caches; None: the engine takes it.
    """

    image: npt.NDArray[np.uint8]
    timestamp: float
    index: int = 0
    cut_sample: CutSample | None = None


@dataclass(slots=True)
class Detections:
    """What a detector saw in one frame."""

    people: list[Person] = field(default_factory=list)
    inference_ms: float = 0.0


@dataclass(slots=True)
class FrameCounts:
    """A stream's frame counters, kept once by whoever owns the stream (read by its recorder)."""

    received: int = 0
    processed: int = 0
    dropped: int = 0


@dataclass(slots=True)
class Fault:
    """A form fault found in one repetition, with feedback a person can act on."""

    code: str
    message: str
    weight: float


@dataclass(slots=True)
class RepRecord:
    """One completed repetition of one person.

    ``score`` is NaN when none of the exercise's form rules could be measured on the rep
    (``FormScorer`` says None; the record keeps a float for its float-typed consumers):
    never a perfect score for nothing seen.  ``measured_rules`` / ``unmeasured_rules``
    name the rules the score covers and those it could not.  ``side`` is the body side
    the rep was counted on (``"left"``, ``"right"``, ``"mean"``; for a combination, the
    sides of its steps joined by ``+``).
    """

    exercise: str
    index: int
    start_time: float
    end_time: float
    range_of_motion_deg: float
    tempo_s: float
    score: float
    faults: list[Fault] = field(default_factory=list)
    measured_rules: list[str] = field(default_factory=list)
    unmeasured_rules: list[str] = field(default_factory=list)
    side: str = ""
    peak_time: float | None = None
    # Set by the engine when the stream scores reps against a coach's reference rep.
    reference: ReferenceComparison | None = None


@dataclass(slots=True)
class RejectedRep:
    """A candidate rep that reached the peak but was not counted, and why.

    ``reason`` is a code: a precondition's code (wrong posture), ``cut`` (a scene cut
    or camera switch inside it), ``gap`` (the person was lost too long), ``too_short``,
    ``too_long``, ``hold_too_short``, ``too_slow`` (a fast technique done slowly) or
    ``not_rising`` (a ``rising`` metric did not grow).  ``message`` says it in words.
    """

    exercise: str
    start_time: float
    end_time: float
    reason: str
    message: str
    side: str = ""


@dataclass(slots=True)
class PersonAnalysis:
    """One tracked person in one frame: smoothed keypoints, joint angles in degrees, reps so far."""

    person: Person
    angles: dict[str, float]
    rep_count: int = 0
    phase: str = ""
    # The rep completed on this frame (None on every other frame), and the latest completed so far.
    new_rep: RepRecord | None = None
    last_rep: RepRecord | None = None
    # Added by the biomechanics stage: degrees per second per angle; centre of mass
    # (x, y) in pixels; dimensionless measures and left/right symmetry indices (%).
    angular_velocity: dict[str, float] = field(default_factory=dict)
    center_of_mass: tuple[float, float] | None = None
    measures: dict[str, float] = field(default_factory=dict)
    # Candidate reps rejected on this frame (usually none), and the latest rejected so far.
    new_rejected: list[RejectedRep] = field(default_factory=list)
    last_rejected: RejectedRep | None = None
    # Counted reps per body side, for ``side: each`` exercises (punches); None otherwise.
    count_by_side: dict[str, int] | None = None


@dataclass(slots=True)
class FrameAnalysis:
    """Everything the engine says about one frame; ``timings_ms`` holds per-stage costs."""

    index: int
    timestamp: float
    width: int
    height: int
    people: list[PersonAnalysis] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
