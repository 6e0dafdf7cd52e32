"""Static analysis of one uploaded image: people, keypoints and joint angles (``POST /api/analyze``).

The detector runs in single-image mode and keypoints are not smoothed: there is no
previous frame to track from.  One detector per backend is built on first use and then
shared by all requests behind a lock (building a MediaPipe graph costs far more than
running it on one image).
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from pydantic import BaseModel

from pose_analyzer.detection.base import DetectorError
from pose_analyzer.detection.registry import BACKENDS
from pose_analyzer.exercises import ExerciseDefinition, available_exercises, load_exercise
from pose_analyzer.image_analysis import ImageAnalyzers
from pose_analyzer.keypoints import KEYPOINT_NAMES
from pose_analyzer.streaming.decode import decode_frame
from pose_analyzer.streaming.errors import UnsupportedFrameError
from pose_analyzer.streaming.image_header import DecodeLimits, ImageTooLargeError
from pose_analyzer.types import PersonAnalysis
from service_kit.errors import (
    InvalidInputError,
    PayloadTooLargeError,
    UnavailableError,
    UnsupportedMediaTypeError,
)
from service_kit.ops import require_api_key

router = APIRouter(prefix="/api", tags=["analyze"], dependencies=[Depends(require_api_key)])


class KeypointOut(BaseModel):
    name: str
    x_px: float | None
    y_px: float | None
    confidence: float


class PersonOut(BaseModel):
    """One person: ``box_px`` is (x1, y1, x2, y2); angles the detector could not see are null."""

    index: int
    score: float
    box_px: list[float]
    keypoints: list[KeypointOut]
    angles_deg: dict[str, float | None]
    phase: str


class AnalyzeOut(BaseModel):
    backend: str
    exercise: str | None
    width_px: int
    height_px: int
    detect_ms: float
    people: list[PersonOut]


def _number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def person_out(index: int, analysis: PersonAnalysis) -> PersonOut:
    person = analysis.person
    keypoints = [
        KeypointOut(name=name, x_px=_number(x), y_px=_number(y), confidence=c if math.isfinite(c) else 0.0)
        for name, (x, y, c) in zip(KEYPOINT_NAMES, person.keypoints.tolist(), strict=True)
    ]
    return PersonOut(
        index=index,
        score=_number(person.score) or 0.0,
        box_px=[float(v) for v in person.box],
        keypoints=keypoints,
        angles_deg={name: _number(v) for name, v in analysis.angles.items()},
        phase=analysis.phase,
    )


def get_analyzers(request: Request) -> ImageAnalyzers:
    analyzers: ImageAnalyzers = request.state.analyzers
    return analyzers


AnalyzersDep = Annotated[ImageAnalyzers, Depends(get_analyzers)]


async def _read_upload(file: UploadFile, limit_bytes: int) -> bytes:
    data = await file.read(limit_bytes + 1)
    if len(data) > limit_bytes:
        raise PayloadTooLargeError(
            f"the image is larger than the limit of {limit_bytes} bytes", {"max_bytes": limit_bytes}
        )
    if not data:
        raise InvalidInputError("the uploaded file is empty")
    return data


def _exercise(name: str | None) -> ExerciseDefinition | None:
    if name is None or name == "":
        return None
    valid = available_exercises()
    if name not in valid:
        raise InvalidInputError(f"unknown exercise {name!r}; valid: {', '.join(valid)}", {"valid": valid})
    return load_exercise(name)


@router.post(
    "/analyze",
    summary="Detect the people of one JPEG/PNG image: keypoints and joint angles",
    responses={
        413: {"description": "the image is larger than POSE_MAX_FRAME_BYTES"},
        415: {"description": "not a whole JPEG or PNG image"},
        422: {"description": "empty upload, unknown exercise or backend"},
        503: {"description": "the backend could not run"},
    },
)
async def analyze(
    request: Request,
    analyzers: AnalyzersDep,
    file: Annotated[UploadFile, File(description="a JPEG or PNG image")],
    exercise: Annotated[str | None, Form(description="exercise name, for its phase")] = None,
    backend: Annotated[str | None, Form(description="mediapipe or yolo; default: the service's")] = None,
) -> AnalyzeOut:
    chosen = backend or request.state.streams.default_backend
    if chosen not in BACKENDS:
        raise InvalidInputError(
            f"unknown pose backend {chosen!r}; valid: {', '.join(BACKENDS)}", {"valid": list(BACKENDS)}
        )
    definition = _exercise(exercise)
    settings = analyzers.settings
    data = await _read_upload(file, settings.max_frame_bytes)
    limits = DecodeLimits(settings.max_image_pixels, settings.verify_jpeg_data)
    try:
        image = await asyncio.to_thread(decode_frame, data, limits)
    except ImageTooLargeError as exc:
        raise PayloadTooLargeError(str(exc)) from exc
    except UnsupportedFrameError as exc:
        raise UnsupportedMediaTypeError(str(exc)) from exc
    start = time.perf_counter()
    try:
        result = await asyncio.to_thread(analyzers.analyse, image, chosen, definition)
    except DetectorError as exc:
        raise UnavailableError(f"the {chosen} backend failed: {exc}") from exc
    detect_ms = result.timings_ms.get("detect", (time.perf_counter() - start) * 1000.0)
    return AnalyzeOut(
        backend=chosen,
        exercise=definition.name if definition else None,
        width_px=result.width,
        height_px=result.height,
        detect_ms=round(detect_ms, 3),
        people=[person_out(i, p) for i, p in enumerate(result.people)],
    )
