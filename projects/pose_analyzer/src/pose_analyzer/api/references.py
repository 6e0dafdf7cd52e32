"""Coaches' reference reps of an exercise: upload an angle series, or take one from a stored rep.

Mounted under ``/api/exercises/{name}/references`` (``api/exercises.py``).  A stream scores its
reps against one by sending it as ``reference_rep`` in its ``start`` message (the JSON this API
returns under ``reference``), the CLI with ``--reference FILE``.
"""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Path, status
from pydantic import BaseModel, ConfigDict, Field

from pose_analyzer.biomechanics.angles import ANGLE_NAMES
from pose_analyzer.engine import reference_columns
from pose_analyzer.exercises import available_exercises
from pose_analyzer.exercises.reference import ReferenceMotion, reference_to_dict
from pose_analyzer.reference_store import NAME_PATTERN, ReferenceExistsError, ReferenceStore, StoredReference
from pose_analyzer.resources import DatabaseDep, ResourcesDep
from pose_analyzer.storage import SessionNotFoundError, angle_series, list_reps
from service_kit.errors import ConflictError, InvalidInputError, NotFoundError

router = APIRouter(prefix="/{name}/references", tags=["references"])

# A reference longer than this many samples is refused (DTW resamples to 100 anyway).
MAX_SAMPLES = 2000
ExerciseName = Annotated[str, Path(description="an exercise from /api/exercises")]
ReferenceName = Annotated[str, Path(pattern=NAME_PATTERN, description="the reference's name")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UploadedReference(_In):
    """A reference rep as an angle series: ``series[t][j]`` is angle ``angles[j]`` in degrees."""

    name: str = Field(pattern=NAME_PATTERN)
    angles: list[str] = Field(min_length=1, max_length=len(ANGLE_NAMES))
    series: list[list[float]] = Field(min_length=2, max_length=MAX_SAMPLES)
    tolerance_deg: float = Field(default=15.0, gt=0, le=180)


class RepReference(_In):
    """A reference taken from a stored rep: its session, stream, track and 1-based index."""

    name: str = Field(pattern=NAME_PATTERN)
    session_id: str
    stream_id: str
    track_id: int = Field(ge=0)
    rep_index: int = Field(ge=1)
    angles: list[str] = Field(min_length=1, max_length=len(ANGLE_NAMES))
    tolerance_deg: float = Field(default=15.0, gt=0, le=180)


class ReferenceOut(BaseModel):
    """A stored reference; ``reference`` is what a stream's ``reference_rep`` takes."""

    exercise: str
    name: str
    samples: int
    reference: dict[str, object]

    @classmethod
    def of(cls, stored: StoredReference) -> ReferenceOut:
        return cls(
            exercise=stored.exercise,
            name=stored.name,
            samples=int(stored.motion.series.shape[0]),
            reference=reference_to_dict(stored.motion),
        )


def _exercise(name: str) -> str:
    valid = available_exercises()
    if name not in valid:
        raise NotFoundError(f"unknown exercise {name!r}; available: {', '.join(valid)}", {"valid": valid})
    return name


def _store(resources: ResourcesDep) -> ReferenceStore:
    return ReferenceStore(resources.settings.references_dir)


def _motion(angles: list[str], series: list[list[float]], tolerance_deg: float) -> ReferenceMotion:
    try:
        motion = ReferenceMotion(tuple(angles), np.asarray(series, dtype=np.float64), tolerance_deg)
        reference_columns(motion)
    except ValueError as exc:
        raise InvalidInputError(f"invalid reference rep: {exc}", code="invalid_reference") from None
    return motion


def _save(store: ReferenceStore, exercise: str, name: str, motion: ReferenceMotion) -> ReferenceOut:
    try:
        return ReferenceOut.of(store.save(exercise, name, motion))
    except ReferenceExistsError:
        raise ConflictError(f"a reference named {name!r} exists for {exercise!r}") from None


@router.post("", status_code=status.HTTP_201_CREATED, summary="Store an uploaded reference rep")
def upload(name: ExerciseName, body: UploadedReference, resources: ResourcesDep) -> ReferenceOut:
    exercise = _exercise(name)
    motion = _motion(body.angles, body.series, body.tolerance_deg)
    return _save(_store(resources), exercise, body.name, motion)


@router.post(
    "/from-rep", status_code=status.HTTP_201_CREATED, summary="Store a reference taken from a stored rep"
)
def from_rep(
    name: ExerciseName, body: RepReference, resources: ResourcesDep, database: DatabaseDep
) -> ReferenceOut:
    """The rep's angles over its span, from the stored per-second means: the database keeps one
    mean per angle and second, so a reference from a stored rep has one sample per second
    (a rep of under two seconds cannot give one; upload the full-rate series instead)."""
    exercise = _exercise(name)
    unknown = [a for a in body.angles if a not in ANGLE_NAMES]
    if unknown:
        raise InvalidInputError(f"unknown angle(s) {', '.join(unknown)}", code="invalid_reference")
    try:
        with database.session() as db:
            reps = list_reps(db, body.session_id)
            points = angle_series(
                db, body.session_id, body.stream_id, track_id=body.track_id, angles=body.angles
            )
    except SessionNotFoundError:
        raise NotFoundError(f"no session {body.session_id!r}") from None
    rep = next(
        (
            r
            for r in reps
            if (r.stream_id, r.track_id, r.index) == (body.stream_id, body.track_id, body.rep_index)
            and r.exercise == exercise
        ),
        None,
    )
    if rep is None:
        raise NotFoundError(f"no {exercise} rep {body.rep_index} of track {body.track_id} in that stream")
    first, last = math.floor(rep.start_s), math.ceil(rep.end_s)
    by_second: dict[int, dict[str, float]] = {}
    for p in points:
        if first <= p.second <= last:
            by_second.setdefault(p.second, {})[p.angle] = p.mean_deg
    rows = [
        [values[a] for a in body.angles]
        for _, values in sorted(by_second.items())
        if values.keys() >= set(body.angles)
    ]
    if len(rows) < 2:
        raise InvalidInputError(
            "the stored rep has fewer than two seconds with every angle seen; upload its series instead",
            code="invalid_reference",
        )
    motion = _motion(body.angles, rows, body.tolerance_deg)
    return _save(_store(resources), exercise, body.name, motion)


@router.get("", summary="Names of the stored reference reps of an exercise")
def names(name: ExerciseName, resources: ResourcesDep) -> list[str]:
    return _store(resources).names(_exercise(name))


@router.get("/{reference}", summary="One stored reference rep")
def get_reference(name: ExerciseName, reference: ReferenceName, resources: ResourcesDep) -> ReferenceOut:
    stored = _store(resources).load(_exercise(name), reference)
    if stored is None:
        raise NotFoundError(f"no reference {reference!r} for {name!r}")
    return ReferenceOut.of(stored)


@router.delete("/{reference}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a reference rep")
def delete_reference(name: ExerciseName, reference: ReferenceName, resources: ResourcesDep) -> None:
    if not _store(resources).delete(_exercise(name), reference):
        raise NotFoundError(f"no reference {reference!r} for {name!r}")
