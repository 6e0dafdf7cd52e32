"""Exercises as data: YAML definitions, the rep counter, form scoring and reference comparison."""

from pose_analyzer.exercises.counter import RepCounter
from pose_analyzer.exercises.definition import (
    Combination,
    ExerciseDefinition,
    ExerciseDefinitionError,
    Precondition,
    Side,
    UnknownExerciseError,
    available_exercises,
    load_exercise,
    parse_exercise,
    shipped_exercise,
)
from pose_analyzer.exercises.reference import ReferenceMotion, dtw_distance
from pose_analyzer.exercises.scoring import Assessment, FormScorer

__all__ = [
    "Assessment",
    "Combination",
    "ExerciseDefinition",
    "ExerciseDefinitionError",
    "FormScorer",
    "Precondition",
    "ReferenceMotion",
    "RepCounter",
    "Side",
    "UnknownExerciseError",
    "available_exercises",
    "dtw_distance",
    "load_exercise",
    "parse_exercise",
    "shipped_exercise",
]
