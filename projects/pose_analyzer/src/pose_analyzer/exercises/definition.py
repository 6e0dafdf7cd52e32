"""Exercise definitions: declarative YAML files validated into typed models.

An exercise is one file in ``definitions/`` (or any path given to ``load_exercise``).
Its ``driver`` names the angle whose value moves the rep counter between a ``rest``
position (where a rep starts and ends) and a ``peak`` position (that a rep must
reach); the gap between the two thresholds is the hysteresis.  ``rules`` are form
checks evaluated over each completed rep; ``preconditions`` are posture checks that
must hold through a rep for it to count at all.  See docs/biomechanics.md for the
angle and measure names.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pose_analyzer.biomechanics.angles import ANGLE_NAMES, JOINT_ANGLES
from pose_analyzer.biomechanics.measures import MEASURE_NAMES
from pose_analyzer.posture import POSTURE_NAMES, SIDED_POSTURE
from service_kit.errors import InvalidInputError

DEFINITIONS_DIR = Path(__file__).parent / "definitions"

# Side-relative names ("knee") resolve to the side the driver follows.
SIDED_NAMES: tuple[str, ...] = tuple(sorted({n.split("_", 1)[1] for n in JOINT_ANGLES}))
SIDED_MEASURES: tuple[str, ...] = ("ankle_height", *SIDED_POSTURE)
METRIC_NAMES: frozenset[str] = frozenset(
    (*ANGLE_NAMES, *MEASURE_NAMES, *POSTURE_NAMES, *SIDED_NAMES, *SIDED_MEASURES)
)
# Hysteresis narrower than this would let detector noise (a few degrees) count reps.
MIN_HYSTERESIS_DEG = 15.0


class ExerciseDefinitionError(ValueError):
    """An exercise definition file is missing, unreadable or invalid; the message says where and why."""


class Side(StrEnum):
    """Which body side drives the counter.

    ``best``: the side whose driver keypoints are more confidently seen (side views);
    ``mean``: the average of both sides (front views of symmetric exercises);
    ``min`` / ``max``: whichever side is more flexed / extended (alternating legs);
    ``each``: both sides counted on their own, each rep labelled with its side
    (alternating punches, where one arm starts before the other is back).
    """

    LEFT = "left"
    RIGHT = "right"
    BEST = "best"
    MEAN = "mean"
    MIN = "min"
    MAX = "max"
    EACH = "each"


def _check_metric(name: str) -> str:
    if name not in METRIC_NAMES:
        raise ValueError(f"unknown angle or measure {name!r}; valid: {', '.join(sorted(METRIC_NAMES))}")
    return name


class Driver(BaseModel):
    """The angle that counts reps, and its rest and peak thresholds in degrees."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    angle: str
    side: Side = Side.BEST
    rest: float = Field(ge=0, le=180)
    peak: float = Field(ge=0, le=180)
    # Starting state: at the start of a clip or after a cut/gap, a pose within
    # ``start_margin`` degrees short of ``rest``, held still, counts as the rest position.
    start_margin: float = Field(default=10.0, ge=0)
    # Velocity events (fast techniques).  ``min_speed``: the driver must move towards the
    # peak at least this fast (deg/s) at some point before reaching it.
    # ``reversal_margin``: a turning point of a fast approach (the driver stops moving
    # towards the peak) within this many degrees short of ``peak`` counts as reaching it,
    # so a snap whose apex falls between two frames is not lost.  ``rising``: metrics that
    # must be larger at the peak than where the rep left rest (the wrist moving away).
    min_speed: float | None = Field(default=None, gt=0)
    reversal_margin: float = Field(default=0.0, ge=0)
    rising: tuple[str, ...] = ()

    @field_validator("angle")
    @classmethod
    def _known_angle(cls, v: str) -> str:
        if v not in (*ANGLE_NAMES, *SIDED_NAMES):
            raise ValueError(f"unknown angle {v!r}; valid: {', '.join((*SIDED_NAMES, *ANGLE_NAMES))}")
        return v

    @field_validator("rising")
    @classmethod
    def _known_rising(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_check_metric(name) for name in v)

    @model_validator(mode="after")
    def _hysteresis(self) -> Driver:
        gap = abs(self.rest - self.peak)
        if gap < MIN_HYSTERESIS_DEG:
            raise ValueError(
                f"rest ({self.rest}) and peak ({self.peak}) must differ by at least "
                f"{MIN_HYSTERESIS_DEG} degrees (the hysteresis that keeps noise from counting)"
            )
        if self.start_margin > gap / 2:
            raise ValueError(
                f"start_margin ({self.start_margin}) must be at most half of |rest - peak| ({gap})"
            )
        if self.reversal_margin > gap / 2:
            raise ValueError(
                f"reversal_margin ({self.reversal_margin}) must be at most half of |rest - peak| ({gap})"
            )
        if self.reversal_margin > 0 and self.min_speed is None:
            raise ValueError(
                "reversal_margin needs min_speed: only a fast approach may end at a turning point"
            )
        return self

    @property
    def flexing(self) -> bool:
        """True when a rep makes the angle smaller (rest above peak), as in a squat."""
        return self.rest > self.peak


def _check_bounds(kind: str, code: str, low: float | None, high: float | None) -> None:
    """A range check needs at least one bound, and its min below its max."""
    if low is None and high is None:
        raise ValueError(f"{kind} {code!r} needs min, max or both")
    if low is not None and high is not None and low >= high:
        raise ValueError(f"{kind} {code!r}: min ({low}) must be below max ({high})")


class FormRule(BaseModel):
    """A form check: ``aggregate`` of ``metric`` over the rep must lie within [min, max].

    ``at_peak`` takes the value at the frame where the driver angle is most extreme
    (deepest squat, highest kick).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    metric: str
    aggregate: Literal["min", "max", "mean", "at_peak"] = "min"
    min: float | None = None
    max: float | None = None
    weight: float = Field(gt=0, le=100)
    message: str = Field(min_length=1)

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        return _check_metric(v)

    @model_validator(mode="after")
    def _bounds(self) -> FormRule:
        _check_bounds("rule", self.code, self.min, self.max)
        return self


class Precondition(BaseModel):
    """A posture check on every frame of a rep: ``metric`` within [min, max].

    A rep counts only if, on the frames of the rep where the metric was seen, it held on
    at least the exercise's ``precondition_share`` of them.  A metric never seen during
    the rep does not reject it (the counter cannot know), see docs/biomechanics.md.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    metric: str
    min: float | None = None
    max: float | None = None
    message: str = Field(min_length=1)

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        return _check_metric(v)

    @model_validator(mode="after")
    def _bounds(self) -> Precondition:
        _check_bounds("precondition", self.code, self.min, self.max)
        return self

    def holds(self, value: float) -> bool | None:
        """Whether ``value`` satisfies the check; None when it is NaN (not seen)."""
        if value != value:  # NaN
            return None
        return not (
            (self.min is not None and value < self.min) or (self.max is not None and value > self.max)
        )


class Combination(BaseModel):
    """Reps of the driver that make one rep of a combination (jab-cross: two punches).

    ``steps`` consecutive reps, each starting at most ``within_s`` after the previous one
    ended (or, for ``side: each``, after the previous one peaked), on alternating sides
    when ``alternate``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: int = Field(ge=2, le=10)
    within_s: float = Field(gt=0)
    alternate: bool = True


class ExerciseDefinition(BaseModel):
    """One exercise, as loaded from its YAML file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    display_name: str
    description: str = ""
    kind: Literal["dynamic", "hold"] = "dynamic"
    driver: Driver
    min_rep_s: float = Field(default=0.4, ge=0)
    max_rep_s: float = Field(default=30.0, gt=0)
    hold_s: float = Field(default=0.0, ge=0)
    rules: tuple[FormRule, ...] = ()
    preconditions: tuple[Precondition, ...] = ()
    precondition_share: float = Field(default=0.8, gt=0, le=1)
    combination: Combination | None = None

    @model_validator(mode="after")
    def _timing(self) -> ExerciseDefinition:
        if self.min_rep_s >= self.max_rep_s:
            raise ValueError(f"min_rep_s ({self.min_rep_s}) must be below max_rep_s ({self.max_rep_s})")
        if self.kind == "hold" and self.hold_s <= 0:
            raise ValueError("a 'hold' exercise needs hold_s > 0")
        codes = [r.code for r in self.rules]
        if len(codes) != len(set(codes)):
            raise ValueError(f"rule codes must be unique, got {codes}")
        pre = [p.code for p in self.preconditions]
        if len(pre) != len(set(pre)):
            raise ValueError(f"precondition codes must be unique, got {pre}")
        return self


class UnknownExerciseError(InvalidInputError, ValueError):
    """An exercise name that is not shipped: 422 ``unknown_exercise`` over HTTP, an ``error``
    message with that code over the WebSocket."""

    code = "unknown_exercise"


def shipped_exercise(name: str | None) -> ExerciseDefinition | None:
    """The shipped exercise ``name`` (only shipped names, never a path); None for None or "".

    Raises:
        UnknownExerciseError: ``name`` is not a shipped exercise.
    """
    if not name:
        return None
    valid = available_exercises()
    if name not in valid:
        raise UnknownExerciseError(
            f"unknown exercise {name!r}; available: {', '.join(valid)}", {"valid": valid}
        )
    return load_exercise(name)


def available_exercises() -> list[str]:
    """Names of the exercises shipped in ``definitions/``, sorted."""
    return sorted(p.stem for p in DEFINITIONS_DIR.glob("*.yaml"))


def parse_exercise(text: str, source: str = "<string>") -> ExerciseDefinition:
    """Validate YAML text into an ExerciseDefinition.

    Raises:
        ExerciseDefinitionError: the YAML is malformed or a field is invalid, naming ``source``.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ExerciseDefinitionError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ExerciseDefinitionError(f"{source}: expected a mapping at the top level")
    try:
        return ExerciseDefinition.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
        )
        raise ExerciseDefinitionError(f"{source}: invalid exercise definition: {problems}") from exc


def load_exercise(name_or_path: str | Path) -> ExerciseDefinition:
    """Load a shipped exercise by name (``"squat"``) or any definition file by path.

    Raises:
        UnknownExerciseError: unknown name (a ValueError; the message lists the valid ones).
        ExerciseDefinitionError: the file is invalid.
    """
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = DEFINITIONS_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            valid = available_exercises()
            raise UnknownExerciseError(
                f"unknown exercise {name_or_path!r}; available: {', '.join(valid)}", {"valid": valid}
            )
    elif not path.is_file():
        raise ExerciseDefinitionError(f"{path}: no such exercise definition file")
    return parse_exercise(path.read_text(encoding="utf-8"), str(path))
