"""The one output model of an analysis: what the WebSocket, ``POST /api/analyze``, the sessions
API and the CLI's ``analysis.json`` say about a frame, a person and a repetition.

Built from the domain result (``types.FrameAnalysis``, ``PersonAnalysis``, ``RepRecord``) by
the ``of`` constructors, so every transport uses the same names:

- ``track_id``: the person's track (0 when the backend does not track: ``person_track_id``);
- ``box``: (x1, y1, x2, y2) pixels of the analysed frame;
- ``keypoints``: ``[x, y, confidence]`` per keypoint in ``keypoints.KEYPOINT_NAMES`` order,
  pixels, ``x`` right and ``y`` down; an unseen coordinate is null, its confidence 0;
- ``angles``: degrees (docs/biomechanics.md), ``angular_velocity``: degrees per second,
  ``measures``: dimensionless ratios, ``center_of_mass``: pixels; each null when not seen;
- ``rep``: the repetition completed on THIS frame (sent once, never repeated on later frames);
  live streams leave it null in frame answers and send it in a ``rep`` message once committed
  (``schemas.RepMessage``), their counts including announced reps only;
- ``rejected``: the person's LATEST candidate rep that did not count (repeated on every frame
  until a newer one replaces it), with its reason code and message (``RejectedOut``);
- ``count_by_side``: counted reps per body side for ``side: each`` exercises (punches), else null;
- a repetition's ``start_s``/``end_s``: seconds on the clock of the frames' timestamps (the
  client's capture clock for streams, the video's clock for files; the sessions API counts
  from the stream's first analysed frame).

``Pose3DOut`` (the ``pose3d`` of a stream's answer in a 3D session, ``multiview.session3d``):
the moment's triangulated ``keypoints`` ``[x, y, z]`` in metres in the rig's world frame (same
order as ``keypoints``; null when fewer than two cameras saw it; smoothed over time like the 2D
keypoints), ``reprojection_px`` per keypoint of the triangulation itself and its mean, 3D
``angles`` (same names and conventions as ``angles``), the session's 3D ``rep_count``/``phase``/
``rep``, the ``cameras`` in the group, the ``missing`` ones, and each camera's ``lateness_ms``
(its frame's arrival after the group's first).  ``people`` lists every triangulated person
(``Person3DOut``: ``id``, the ``cameras`` that saw it, its ``keypoints``, ``reprojection_mean_px``
and ``angles``), the one the top-level fields describe first (``person_id``); a single-person
backend gives one, id 0; with a multi-person backend the people are associated across cameras
and keep their ids from moment to moment (``multiview.people3d``).

JSON has no NaN: every non-finite number becomes null here, in one place.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from pose_analyzer.exercises.reference import ReferenceComparison
from pose_analyzer.types import FrameAnalysis, Person, PersonAnalysis, RejectedRep, RepRecord

if TYPE_CHECKING:
    from pose_analyzer.multiview.moment3d import Moment3D
    from pose_analyzer.multiview.people3d import PersonMoment


def finite(value: float) -> float | None:
    """``value`` as a float, or None when it is NaN or infinite (JSON has no NaN)."""
    number = float(value)
    return number if math.isfinite(number) else None


def person_track_id(person: Person) -> int:
    """The track id a person is reported and stored under: 0 for a backend that does not track."""
    return person.track_id if person.track_id is not None else 0


def _finite_map(values: dict[str, float]) -> dict[str, float | None]:
    return {name: finite(value) for name, value in values.items()}


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FaultOut(_Out):
    """A form fault of a repetition: its rule's code, message and weight in the score."""

    code: str
    message: str
    weight: float


class ReferenceOut(_Out):
    """A repetition compared with the coach's reference rep (``exercises.reference``): ``score``
    0-100, ``distance_deg`` the mean aligned difference, ``per_angle_deg`` the mean difference
    of each angle, ``worst_phase`` (``to_peak``, ``peak``, ``from_peak``) with its difference,
    and ``message``, the feedback in words."""

    score: float
    distance_deg: float
    per_angle_deg: dict[str, float]
    worst_phase: str
    worst_phase_deg: float
    message: str

    @classmethod
    def of(cls, comparison: ReferenceComparison) -> ReferenceOut:
        return cls(
            score=comparison.score,
            distance_deg=comparison.distance_deg,
            per_angle_deg=comparison.per_angle_deg,
            worst_phase=comparison.worst_phase,
            worst_phase_deg=comparison.worst_phase_deg,
            message=comparison.message,
        )


class RepOut(_Out):
    """A completed repetition: 1-based index, 0-100 form score, faults, range of motion, tempo;
    ``reference`` when the stream compares reps with a reference rep (else null)."""

    exercise: str
    index: int
    start_s: float
    end_s: float
    score: float | None
    range_of_motion_deg: float | None
    tempo_s: float | None
    faults: list[FaultOut]
    reference: ReferenceOut | None = None

    @classmethod
    def of(cls, rep: RepRecord, origin_s: float = 0.0) -> RepOut:
        """``rep`` with its times counted from ``origin_s``."""
        return cls(
            exercise=rep.exercise,
            index=rep.index,
            start_s=rep.start_time - origin_s,
            end_s=rep.end_time - origin_s,
            score=finite(rep.score),
            range_of_motion_deg=finite(rep.range_of_motion_deg),
            tempo_s=finite(rep.tempo_s),
            faults=[FaultOut(code=f.code, message=f.message, weight=f.weight) for f in rep.faults],
            reference=ReferenceOut.of(rep.reference) if rep.reference is not None else None,
        )


class RejectedOut(_Out):
    """A candidate rep that did not count: ``reason`` is a code (a precondition's code, ``cut``,
    ``gap``, ``too_short``... see ``types.RejectedRep``), ``message`` says it in words."""

    exercise: str
    start_s: float
    end_s: float
    reason: str
    message: str
    side: str

    @classmethod
    def of(cls, rejected: RejectedRep, origin_s: float = 0.0) -> RejectedOut:
        """``rejected`` with its times counted from ``origin_s``."""
        return cls(
            exercise=rejected.exercise,
            start_s=rejected.start_time - origin_s,
            end_s=rejected.end_time - origin_s,
            reason=rejected.reason,
            message=rejected.message,
            side=rejected.side,
        )


class PersonOut(_Out):
    """One tracked person in one frame (field meanings in the module doc)."""

    track_id: int
    score: float | None
    box: tuple[float, float, float, float]
    keypoints: list[tuple[float | None, float | None, float]]
    angles: dict[str, float | None]
    angular_velocity: dict[str, float | None]
    measures: dict[str, float | None]
    center_of_mass: tuple[float, float] | None
    rep_count: int
    phase: str
    rep: RepOut | None
    rejected: RejectedOut | None
    count_by_side: dict[str, int] | None

    @classmethod
    def of(cls, analysis: PersonAnalysis) -> PersonOut:
        person = analysis.person
        x1, y1, x2, y2 = (float(v) for v in person.box)
        return cls(
            track_id=person_track_id(person),
            score=finite(person.score),
            box=(x1, y1, x2, y2),
            keypoints=[
                (finite(x), finite(y), c if math.isfinite(c) else 0.0)
                for x, y, c in person.keypoints.tolist()
            ],
            angles=_finite_map(analysis.angles),
            angular_velocity=_finite_map(analysis.angular_velocity),
            measures=_finite_map(analysis.measures),
            center_of_mass=analysis.center_of_mass,
            rep_count=analysis.rep_count,
            phase=analysis.phase,
            rep=RepOut.of(analysis.new_rep) if analysis.new_rep is not None else None,
            rejected=RejectedOut.of(analysis.last_rejected) if analysis.last_rejected is not None else None,
            count_by_side=analysis.count_by_side,
        )


class FrameOut(_Out):
    """One analysed frame: its index, time (s), size in pixels and the people in it."""

    index: int
    time: float
    width: int
    height: int
    people: list[PersonOut]

    @classmethod
    def of(cls, analysis: FrameAnalysis) -> FrameOut:
        return cls(
            index=analysis.index,
            time=analysis.timestamp,
            width=analysis.width,
            height=analysis.height,
            people=people_out(analysis.people),
        )


def people_out(people: Iterable[PersonAnalysis]) -> list[PersonOut]:
    return [PersonOut.of(p) for p in people]


def _points_out(points: list[list[float]]) -> list[tuple[float, float, float] | None]:
    return [(x, y, z) if math.isfinite(x + y + z) else None for x, y, z in points]


class Person3DOut(_Out):
    """One triangulated person of a 3D moment (field meanings in the module doc)."""

    id: int
    cameras: list[str]
    keypoints: list[tuple[float, float, float] | None]
    reprojection_mean_px: float | None
    angles: dict[str, float | None]

    @classmethod
    def of(cls, person: PersonMoment) -> Person3DOut:
        return cls(
            id=person.id,
            cameras=list(person.cameras),
            keypoints=_points_out(person.points.tolist()),
            reprojection_mean_px=finite(person.mean_reprojection_px),
            angles=_finite_map(person.angles),
        )


class Pose3DOut(_Out):
    """One triangulated moment of a 3D session (field meanings in the module doc)."""

    seq: int
    capture_ts: float
    cameras: list[str]
    missing: list[str]
    lateness_ms: dict[str, float]
    keypoints: list[tuple[float, float, float] | None]
    reprojection_px: list[float | None]
    reprojection_mean_px: float | None
    angles: dict[str, float | None]
    rep_count: int
    phase: str
    rep: RepOut | None
    person_id: int | None
    people: list[Person3DOut]

    @classmethod
    def of(cls, moment: Moment3D) -> Pose3DOut:
        points = [] if moment.points is None else moment.points.tolist()
        errors = [] if moment.reprojection_px is None else moment.reprojection_px.tolist()
        return cls(
            seq=moment.seq,
            capture_ts=moment.capture_ts,
            cameras=list(moment.cameras),
            missing=list(moment.missing),
            lateness_ms={k: round(v * 1000.0, 3) for k, v in moment.lateness_s.items()},
            keypoints=_points_out(points),
            reprojection_px=[finite(v) for v in errors],
            reprojection_mean_px=finite(moment.mean_reprojection_px),
            angles=_finite_map(moment.angles),
            rep_count=moment.rep_count,
            phase=moment.phase,
            rep=RepOut.of(moment.rep) if moment.rep is not None else None,
            person_id=moment.person_id,
            people=[Person3DOut.of(p) for p in moment.people],
        )
