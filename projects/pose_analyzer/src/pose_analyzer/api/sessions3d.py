"""A 3D session's series: the triangulated moments its streams stored (``frames_3d``).

``GET /api/sessions/{id}/3d`` returns them as JSON (keypoints in metres, in the rig's world
frame, in ``keypoints.KEYPOINT_NAMES`` order; per-keypoint reprojection error; 3D angles).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from pose_analyzer.keypoints import KEYPOINT_NAMES
from pose_analyzer.resources import DatabaseDep
from pose_analyzer.storage import Database, SessionNotFoundError
from pose_analyzer.storage.rigs import Point3DFrame, frames_3d
from service_kit.errors import NotFoundError
from service_kit.ops import require_api_key

router = APIRouter(prefix="/api/sessions", tags=["sessions"], dependencies=[Depends(require_api_key)])
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no such session"}}


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
