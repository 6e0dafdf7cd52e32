"""The shipped exercises and their rules (driver angle, thresholds, form checks)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from pose_analyzer.api import references
from pose_analyzer.exercises import ExerciseDefinition, available_exercises, load_exercise
from service_kit.errors import NotFoundError
from service_kit.ops import require_api_key

router = APIRouter(prefix="/api/exercises", tags=["exercises"], dependencies=[Depends(require_api_key)])


@router.get("", summary="Every shipped exercise with its rules")
def exercises() -> list[ExerciseDefinition]:
    return [load_exercise(name) for name in available_exercises()]


@router.get(
    "/{name}", summary="One exercise with its rules", responses={404: {"description": "no such exercise"}}
)
def exercise(name: str) -> ExerciseDefinition:
    # Only shipped names: load_exercise would also read any ".yaml" path it is given.
    valid = available_exercises()
    if name not in valid:
        raise NotFoundError(f"unknown exercise {name!r}; available: {', '.join(valid)}", {"valid": valid})
    return load_exercise(name)


# Coaches' reference reps of an exercise: /api/exercises/{name}/references (api/references.py).
router.include_router(references.router)
