"""A 3D session's series: the triangulated moments its streams stored (``frames_3d``).

``GET /api/sessions/{id}/3d`` returns them as JSON (keypoints in metres, in the rig's world
frame, in ``keypoints.KEYPOINT_NAMES`` order; per-keypoint reprojection error; 3D angles);
``/3d.trc`` as an OpenSim marker file and ``/3d.csv`` as a table (``multiview.export``, the
offline ``triangulate`` command's writers).  Moments of a live session come at the rate the
service kept up with, not always evenly: the TRC is written at the median rate of the moments
(its times are frame / rate), the CSV keeps each moment's own time.  A moment's top-level
keypoints are its first person's (``person_id``); a multi-person session's other people are
in ``others`` (their ids and keypoints); the TRC and CSV hold the first person.
"""

from __future__ import annotations

import itertools
import math
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import BaseModel

from pose_analyzer.biomechanics.angles import ANGLE_NAMES
from pose_analyzer.keypoints import KEYPOINT_NAMES
from pose_analyzer.multiview.export import write_series_csv, write_trc
from pose_analyzer.resources import DatabaseDep
from pose_analyzer.storage import Database, SessionNotFoundError
from pose_analyzer.storage.rigs import Point3DFrame, frames_3d
from service_kit.errors import NotFoundError
from service_kit.ops import require_api_key

router = APIRouter(prefix="/api/sessions", tags=["sessions"], dependencies=[Depends(require_api_key)])
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no such session"}}


class Other3DOut(BaseModel):
    """Another person of a multi-person moment (``multiview.session3d.Moment3D.row``)."""

    id: int
    cameras: list[str]
    keypoints: list[tuple[float, float, float] | None]


class Moment3DOut(BaseModel):
    """One stored moment: ``time_s`` counts from the session's first moment."""

    seq: int
    capture_ts: float
    time_s: float
    cameras: list[str]
    keypoints: list[tuple[float, float, float] | None]
    reprojection_px: list[float | None]
    reprojection_mean_px: float | None
    angles: dict[str, float | None]
    rep_count: int
    person_id: int | None = None
    others: list[Other3DOut] = []


class Series3DOut(BaseModel):
    session_id: str
    keypoint_names: list[str]
    units: str
    moments: list[Moment3DOut]
    reprojection_mean_px: float | None


def session_frames(database: Database, session_id: str) -> list[Point3DFrame]:
    """Raises: NotFoundError (404) for an unknown session."""
    try:
        with database.session() as db:
            return frames_3d(db, session_id)
    except SessionNotFoundError as exc:
        raise NotFoundError(str(exc)) from None


def _moment(frame: Point3DFrame, origin: float) -> Moment3DOut:
    data = frame.data
    points = data.get("keypoints", [])
    return Moment3DOut(
        seq=frame.seq,
        capture_ts=frame.capture_ts,
        time_s=frame.capture_ts - origin,
        cameras=data.get("cameras", []),
        keypoints=[tuple(p) if p is not None else None for p in points],
        reprojection_px=data.get("reprojection_px", []),
        reprojection_mean_px=frame.reprojection_px,
        angles=data.get("angles", {}),
        rep_count=int(data.get("rep_count", 0)),
        person_id=data.get("person_id"),
        others=[
            Other3DOut(
                id=o["id"],
                cameras=o["cameras"],
                keypoints=[tuple(p) if p is not None else None for p in o["keypoints"]],
            )
            for o in data.get("others", [])
        ],
    )


@router.get("/{session_id}/3d", summary="A 3D session's triangulated series", responses=_NOT_FOUND)
def series(session_id: str, database: DatabaseDep) -> Series3DOut:
    frames = session_frames(database, session_id)
    origin = frames[0].capture_ts if frames else 0.0
    errors = [f.reprojection_px for f in frames if f.reprojection_px is not None]
    return Series3DOut(
        session_id=session_id,
        keypoint_names=list(KEYPOINT_NAMES),
        units="m",
        moments=[_moment(f, origin) for f in frames],
        reprojection_mean_px=sum(errors) / len(errors) if errors else None,
    )


FloatArray = npt.NDArray[np.float64]


def _arrays(frames: list[Point3DFrame]) -> tuple[FloatArray, FloatArray, FloatArray, dict[str, FloatArray]]:
    """Times (T,) from the first moment, points (T, K, 3), reprojection (T, K), angles by name."""
    k = len(KEYPOINT_NAMES)
    times = np.array([f.capture_ts - frames[0].capture_ts for f in frames])
    points = np.full((len(frames), k, 3), np.nan)
    errors = np.full((len(frames), k), np.nan)
    angles = {name: np.full(len(frames), np.nan) for name in ANGLE_NAMES}
    for t, frame in enumerate(frames):
        for i, p in enumerate(frame.data.get("keypoints", [])[:k]):
            if p is not None:
                points[t, i] = p
        for i, e in enumerate(frame.data.get("reprojection_px", [])[:k]):
            if e is not None:
                errors[t, i] = e
        for name, value in frame.data.get("angles", {}).items():
            if name in angles and value is not None:
                angles[name][t] = value
    return times, points, errors, angles


def _moments_or_404(database: Database, session_id: str) -> list[Point3DFrame]:
    frames = session_frames(database, session_id)
    if not frames:
        raise NotFoundError(f"session {session_id!r} has no 3D moments", code="no_3d_moments")
    return frames


def _file(path: Path, media_type: str, name: str) -> Response:
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    return Response(path.read_bytes(), media_type=media_type, headers=headers)


@router.get("/{session_id}/3d.trc", summary="A 3D session as an OpenSim marker file", responses=_NOT_FOUND)
def trc(session_id: str, database: DatabaseDep) -> Response:
    frames = _moments_or_404(database, session_id)
    times, points, _, _ = _arrays(frames)
    steps = [b - a for a, b in itertools.pairwise(times.tolist()) if b > a]
    rate = 1.0 / statistics.median(steps) if steps else 30.0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{session_id}.trc"
        write_trc(path, points, fps=rate if math.isfinite(rate) else 30.0)
        return _file(path, "text/plain; charset=utf-8", path.name)


@router.get("/{session_id}/3d.csv", summary="A 3D session as CSV", responses=_NOT_FOUND)
def csv(session_id: str, database: DatabaseDep) -> Response:
    frames = _moments_or_404(database, session_id)
    times, points, errors, angles = _arrays(frames)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{session_id}-3d.csv"
        write_series_csv(path, times, points, errors, angles)
        return _file(path, "text/csv; charset=utf-8", path.name)
