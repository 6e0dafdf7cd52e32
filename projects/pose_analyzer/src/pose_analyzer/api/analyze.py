"""Static analysis of one uploaded image: people, keypoints and joint angles (``POST /api/analyze``).

The detector runs in single-image mode and keypoints are not smoothed: there is no
previous frame to track from.  One detector per backend is built on first use and then
shared by all requests behind a lock (building a MediaPipe graph costs far more than
running it on one image).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, HTTPException, UploadFile
from pydantic import BaseModel

from pose_analyzer.detection.base import DetectorError
from pose_analyzer.detection.registry import BACKENDS, UnknownBackendError
from pose_analyzer.exercises import shipped_exercise
from pose_analyzer.limits import BusyError
from pose_analyzer.output import PersonOut, people_out
from pose_analyzer.resources import ResourcesDep
from pose_analyzer.streaming.decode import decode_frame
from pose_analyzer.streaming.image_header import DecodeLimits
from service_kit.errors import (
    InvalidInputError,
    PayloadTooLargeError,
    UnavailableError,
)
from service_kit.ops import require_api_key

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["analyze"], dependencies=[Depends(require_api_key)])


class AnalyzeOut(BaseModel):
    """The people of one image (``output.PersonOut``: the service's one output model)."""

    backend: str
    exercise: str | None
    width: int
    height: int
    detect_ms: float
    people: list[PersonOut]


async def _read_upload(file: UploadFile, limit_bytes: int) -> bytes:
    data = await file.read(limit_bytes + 1)
    if len(data) > limit_bytes:
        raise PayloadTooLargeError(
            f"the image is larger than the limit of {limit_bytes} bytes", {"max_bytes": limit_bytes}
        )
    if not data:
        raise InvalidInputError("the uploaded file is empty")
    return data


@router.post(
    "/analyze",
    summary="Detect the people of one JPEG/PNG image: keypoints and joint angles",
    responses={
        413: {"description": "the image is larger than POSE_MAX_FRAME_BYTES"},
        429: {"description": "too many images in analysis and waiting; retry after Retry-After seconds"},
        415: {"description": "not a whole JPEG or PNG image"},
        422: {"description": "empty upload, unknown exercise or backend"},
        503: {"description": "the backend could not run"},
    },
)
async def analyze(
    resources: ResourcesDep,
    file: Annotated[UploadFile, File(description="a JPEG or PNG image")],
    exercise: Annotated[str | None, Form(description="exercise name, for its phase")] = None,
    backend: Annotated[str | None, Form(description="mediapipe or yolo; default: the service's")] = None,
) -> AnalyzeOut:
    chosen = backend or resources.backend
    analyzers = resources.analyzers
    if chosen not in BACKENDS:
        valid = list(BACKENDS)
        raise UnknownBackendError(
            f"unknown pose backend {chosen!r}; valid: {', '.join(valid)}", {"valid": valid}
        )
    definition = shipped_exercise(exercise)
    try:
        async with resources.analyze_limit.slot():  # bounds the decoded images held at once
            data = await _read_upload(file, resources.settings.max_frame_bytes)
            limits = DecodeLimits(resources.settings.max_image_pixels, resources.settings.verify_jpeg_data)
            image = await asyncio.to_thread(decode_frame, data, limits)
            start = time.perf_counter()
            try:
                result = await asyncio.to_thread(analyzers.analyse, image, chosen, definition)
            except DetectorError as exc:
                log.warning("image analysis failed", extra={"backend": chosen, "error": str(exc)})
                raise UnavailableError(f"the {chosen} backend could not analyse the image") from exc
    except BusyError as exc:
        # An HTTPException because the shared handler passes its headers on (Retry-After).
        raise HTTPException(
            429,
            f"the service is busy ({exc.running} images in analysis, {exc.waiting} waiting); retry in 1 s",
            headers={"Retry-After": "1"},
        ) from None
    detect_ms = result.timings_ms.get("detect", (time.perf_counter() - start) * 1000.0)
    return AnalyzeOut(
        backend=chosen,
        exercise=definition.name if definition else None,
        width=result.width,
        height=result.height,
        detect_ms=round(detect_ms, 3),
        people=people_out(result.people),
    )
