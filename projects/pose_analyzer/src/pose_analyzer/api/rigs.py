"""Calibrated camera rigs: uploaded (JSON form, or a calibration file's text), listed, read, deleted.

``PUT /api/rigs/{name}`` takes the rig in one of three bodies:

- ``application/json``, the JSON form (``calibration_io.rig_to_dict``: one object per camera,
  the keys of the Pose2Sim/anipose TOML form), which is also what ``GET`` returns under ``rig``;
- ``application/json`` ``{"format": "qca" | "toml" | "yaml" | "json", "text": "..."}``: a
  calibration file as users have it (Qualisys ``.qca.txt``, Pose2Sim TOML, OpenCV YAML/JSON);
- the file's text itself, its format named by ``?format=`` or by the content type
  (``application/toml``, ``application/xml``/``text/xml`` for Qualisys, ``application/yaml``).

A 3D stream names the rig and its camera in its ``start`` message.  Every refused rig is a 4xx
naming the camera and the problem (``invalid_rig``), never a 500.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from pydantic import BaseModel

from pose_analyzer.multiview.calibration_io import RIG_FORMATS, parse_rig_text, rig_from_dict, rig_to_dict
from pose_analyzer.multiview.rig import CameraRig, RigError
from pose_analyzer.resources import DatabaseDep
from pose_analyzer.storage import Database
from pose_analyzer.storage.rigs import RigNotFoundError, StoredRig, delete_rig, get_rig, list_rigs, put_rig
from service_kit.bodylimit import read_body_limited
from service_kit.errors import (
    InvalidInputError,
    NotFoundError,
    UnsupportedMediaTypeError,
)
from service_kit.ops import require_api_key

router = APIRouter(prefix="/api/rigs", tags=["rigs"], dependencies=[Depends(require_api_key)])

RIG_NAME_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$"
MAX_RIG_BYTES = 1 << 20
RigName = Annotated[str, Path(pattern=RIG_NAME_PATTERN, description="the rig's name")]
_TEXT_TYPES = {
    "application/toml": "toml",
    "text/toml": "toml",
    "application/xml": "qca",
    "text/xml": "qca",
    "application/yaml": "yaml",
    "application/x-yaml": "yaml",
    "text/yaml": "yaml",
}


class RigOut(BaseModel):
    """A stored rig: its cameras in order and the JSON form (``rig``) a ``PUT`` takes back."""

    name: str
    cameras: list[str]
    created_at: datetime
    updated_at: datetime
    rig: dict[str, Any]

    @classmethod
    def of(cls, stored: StoredRig) -> RigOut:
        return cls(
            name=stored.name,
            cameras=[str(entry.get("name", key)) for key, entry in stored.rig.items()],
            created_at=stored.created_at,
            updated_at=stored.updated_at,
            rig=stored.rig,
        )


def invalid_rig(message: str) -> InvalidInputError:
    return InvalidInputError(message, code="invalid_rig")


def parse_upload(raw: bytes, content_type: str, fmt: str | None) -> CameraRig:
    """The rig a ``PUT`` body describes (see the module doc).

    Raises:
        InvalidInputError: not a valid rig (``invalid_rig``) or an unknown format.
        UnsupportedMediaTypeError: a body whose format neither ``?format=`` nor its type names.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid_rig("the rig must be UTF-8 text") from None
    media = content_type.split(";")[0].strip().lower()
    try:
        if fmt is None and media == "application/json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise invalid_rig(f"the body is not JSON: {exc}") from None
            if isinstance(data, dict) and isinstance(data.get("format"), str) and "text" in data:
                if not isinstance(data["text"], str):
                    raise invalid_rig("'text' must be the calibration file's text")
                return _parse_text(data["text"], data["format"])
            return rig_from_dict(data)
        chosen = fmt or _TEXT_TYPES.get(media)
        if chosen is None:
            raise UnsupportedMediaTypeError(
                f"send the rig as application/json, or name the text's format with ?format= "
                f"({', '.join(RIG_FORMATS)}); got content type {media or 'none'!r}"
            )
        return _parse_text(text, chosen)
    except RigError as exc:
        raise invalid_rig(str(exc)) from None


def _parse_text(text: str, fmt: str) -> CameraRig:
    if fmt not in RIG_FORMATS:
        raise invalid_rig(f"unknown calibration format {fmt!r}; use one of {', '.join(RIG_FORMATS)}")
    return parse_rig_text(text, fmt)


def _store(database: Database, name: str, rig: CameraRig) -> tuple[StoredRig, bool]:
    with database.session() as db:
        return put_rig(db, name, rig_to_dict(rig), len(rig))


@router.put(
    "/{name}",
    summary="Store a calibrated rig (JSON form, or a calibration file's text)",
    responses={201: {"description": "created"}, 200: {"description": "replaced"}},
)
async def put(
    name: RigName,
    request: Request,
    response: Response,
    database: DatabaseDep,
    fmt: Annotated[str | None, Query(alias="format", description=f"one of {', '.join(RIG_FORMATS)}")] = None,
) -> RigOut:
    raw = await read_body_limited(request, MAX_RIG_BYTES)
    rig = parse_upload(raw, request.headers.get("content-type", ""), fmt)
    stored, created = await asyncio.to_thread(_store, database, name, rig)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return RigOut.of(stored)


@router.get("", summary="The stored rigs")
def index(database: DatabaseDep) -> list[RigOut]:
    with database.session() as db:
        return [RigOut.of(r) for r in list_rigs(db)]


@router.get("/{name}", summary="One stored rig")
def read(name: RigName, database: DatabaseDep) -> RigOut:
    try:
        with database.session() as db:
            return RigOut.of(get_rig(db, name))
    except RigNotFoundError as exc:
        raise NotFoundError(str(exc), code="unknown_rig") from None


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a stored rig")
def remove(name: RigName, database: DatabaseDep) -> None:
    try:
        with database.session() as db:
            delete_rig(db, name)
    except RigNotFoundError as exc:
        raise NotFoundError(str(exc), code="unknown_rig") from None
