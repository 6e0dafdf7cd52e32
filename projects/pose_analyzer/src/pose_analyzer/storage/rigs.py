"""Stored camera rigs and the 3D series of sessions; plain functions over a SQLAlchemy ``Session``.

Rigs are kept as the JSON form of ``multiview.calibration_io.rig_to_dict``: the storage layer
neither parses nor validates them (the caller did, before ``put_rig``).  Functions do not commit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from pose_analyzer.storage.errors import SessionNotFoundError, StorageError
from pose_analyzer.storage.models import AnalysisSession, Frame3D, RigRecord, utc_now


class RigNotFoundError(StorageError, LookupError):
    """No rig has the name asked for."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no rig named {name!r}")
        self.name = name


@dataclass(frozen=True, slots=True)
class StoredRig:
    name: str
    created_at: datetime
    updated_at: datetime
    camera_count: int
    rig: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Point3DFrame:
    """One stored moment of a 3D session (see ``models.Frame3D``)."""

    seq: int
    capture_ts: float
    reprojection_px: float | None
    data: dict[str, Any]


def _stored(row: RigRecord) -> StoredRig:
    return StoredRig(row.name, row.created_at, row.updated_at, row.camera_count, dict(row.rig))


def put_rig(db: Session, name: str, rig: dict[str, Any], camera_count: int) -> tuple[StoredRig, bool]:
    """Store ``rig`` under ``name``, replacing one there; returns it and whether it is new."""
    row = db.get(RigRecord, name)
    created = row is None
    now = utc_now()
    if row is None:
        row = RigRecord(name=name, created_at=now, updated_at=now, camera_count=camera_count, rig=rig)
        db.add(row)
    else:
        row.rig, row.camera_count, row.updated_at = rig, camera_count, now
    db.flush()
    return _stored(row), created


def get_rig(db: Session, name: str) -> StoredRig:
    """Raises: RigNotFoundError."""
    row = db.get(RigRecord, name)
    if row is None:
        raise RigNotFoundError(name)
    return _stored(row)


def list_rigs(db: Session) -> list[StoredRig]:
    return [_stored(r) for r in db.scalars(select(RigRecord).order_by(RigRecord.name))]


def delete_rig(db: Session, name: str) -> None:
    """Raises: RigNotFoundError."""
    row = db.get(RigRecord, name)
    if row is None:
        raise RigNotFoundError(name)
    db.delete(row)


def next_frame_seq(db: Session, session_id: str) -> int:
    """The sequence number the session's next 3D moment gets (one more than the last stored)."""
    last = db.scalar(select(func.max(Frame3D.seq)).where(Frame3D.session_id == session_id))
    return 0 if last is None else int(last) + 1


def add_frames_3d(db: Session, session_id: str, frames: Iterable[Point3DFrame]) -> int:
    """Store moments of a 3D session; returns how many.

    Raises:
        SessionNotFoundError: no such session.
    """
    if db.get(AnalysisSession, session_id) is None:
        raise SessionNotFoundError(session_id)
    rows = [
        Frame3D(
            session_id=session_id,
            seq=f.seq,
            capture_ts=f.capture_ts,
            reprojection_px=f.reprojection_px,
            data=f.data,
        )
        for f in frames
    ]
    db.add_all(rows)
    db.flush()
    return len(rows)


def frames_3d(db: Session, session_id: str) -> list[Point3DFrame]:
    """A session's 3D moments in order.

    Raises:
        SessionNotFoundError: no such session.
    """
    if db.get(AnalysisSession, session_id) is None:
        raise SessionNotFoundError(session_id)
    query = select(Frame3D).where(Frame3D.session_id == session_id).order_by(Frame3D.seq)
    return [Point3DFrame(r.seq, r.capture_ts, r.reprojection_px, dict(r.data)) for r in db.scalars(query)]


def delete_frames_3d(db: Session, session_id: str) -> None:
    db.execute(delete(Frame3D).where(Frame3D.session_id == session_id))
