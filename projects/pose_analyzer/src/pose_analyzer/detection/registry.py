"""Choose and build a pose backend by name: the only place that knows which backends exist.

Each backend is a ``BackendSpec``: how to build its detector from ``DetectorOptions``,
whether frames of several streams share one model call (``batches``), and which tracker
follows its people.  Everything outside ``detection/`` asks the registry, never a name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pose_analyzer.detection.base import Detector
from pose_analyzer.detection.options import DetectorOptions
from service_kit.errors import InvalidInputError

if TYPE_CHECKING:
    from pose_analyzer.tracking import Tracker

AUTO = "auto"


class UnknownBackendError(InvalidInputError, ValueError):
    """A backend name the registry does not know (422 ``unknown_backend``)."""

    code = "unknown_backend"


@dataclass(frozen=True, slots=True)
class BackendSpec:
    """One backend: its constructor, its options from ``DetectorOptions``, whether its frames are
    batched across streams (one shared model) or analysed per stream (one instance each, stateful),
    the tracker suited to it, and its keypoint model's known angle error.

    ``angle_tolerance_deg``: how far this keypoint model's joint angles are known to read
    from those of the model the exercises' limits were written and checked with
    (MediaPipe, hence 0 for it).  The form scorer does not report a fault on an angle
    that is beyond its limit by less than this (``FormScorer``).  Measured by
    ``scripts/validate_counts.py --calibrate`` on the shared clips (docs/validation.md).

    ``multi_person``: the detector reports every person of a frame, so a 3D session associates
    them across cameras (``multiview.people3d``) instead of taking each camera's first.
    """

    name: str
    batches: bool
    factory: Callable[..., Detector]
    options: Callable[[DetectorOptions], dict[str, Any]]
    tracker: Callable[[], Tracker]
    angle_tolerance_deg: float = 0.0
    multi_person: bool = False


def _mediapipe(**options: Any) -> Detector:
    # Imported here so that choosing one backend does not load the other's libraries.
    from pose_analyzer.detection.mediapipe import MediaPipeDetector

    return MediaPipeDetector(**options)


def _yolo(**options: Any) -> Detector:
    from pose_analyzer.detection.yolo import YoloDetector

    return YoloDetector(**options)


def _mediapipe_options(options: DetectorOptions) -> dict[str, Any]:
    return {"static_image_mode": options.still_images}


def _yolo_options(options: DetectorOptions) -> dict[str, Any]:
    return {
        "weights": options.weights,
        "device": options.device,
        "models_dir": options.models_dir,
        "cache_dir": options.onnx_cache_dir,
    }


def _one_person_tracker() -> Tracker:
    from pose_analyzer.tracking import SinglePersonTracker

    # One person at most: whoever it finds is the athlete, however they moved or how long lost.
    return SinglePersonTracker()


def _pose_tracker() -> Tracker:
    from pose_analyzer.tracking import Confirmation, PoseTracker

    # Ghost people (1-8 frames) are never confirmed; someone lost up to 3 s and found again
    # where they were keeps their id (docs in tracking.py).
    return PoseTracker(confirmation=Confirmation(keep_lost_s=3.0))


# YOLO11n-pose against MediaPipe (``scripts/validate_counts.py --calibrate``): per-rep
# extremes of the driving angle, as the scorer reads them (3-sample median), on the 14
# reps both count on the shared push-up, squat and curl clips; 26 extremes (two YOLO
# push-up bottoms at 4 and 15 deg, a wrist put on the elbow, left out): median
# |difference| 7.7 deg, 75th percentile 10.8, max 22.6.  YOLO's elbow reads 4-23 deg less
# straight at a push-up's or curl's lockout and 10-17 deg less bent at the bottom (its
# wrist falls short of where the hand is); its knee reads 6-15 deg deeper in a squat.
# The tolerance is the 75th percentile, rounded: YOLO's extreme lies that close to
# MediaPipe's on three reps out of four.
_YOLO_ANGLE_TOLERANCE_DEG = 11.0

SPECS: dict[str, BackendSpec] = {
    "mediapipe": BackendSpec("mediapipe", False, _mediapipe, _mediapipe_options, _one_person_tracker),
    "yolo": BackendSpec(
        "yolo",
        True,
        _yolo,
        _yolo_options,
        _pose_tracker,
        angle_tolerance_deg=_YOLO_ANGLE_TOLERANCE_DEG,
        multi_person=True,
    ),
}
BACKENDS: tuple[str, ...] = tuple(SPECS)


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve_backend(requested: str, cuda_available: bool | None = None) -> tuple[str, str]:
    """Turn a requested backend name into a concrete one, with a reason a person can read.

    ``"auto"`` picks ``"yolo"`` (multi-person, batched) when CUDA is available, else
    ``"mediapipe"`` (fast single-person on CPU).  ``cuda_available=None`` asks torch.

    Raises:
        UnknownBackendError: an unknown name (a ValueError); the message lists the valid ones.
    """
    name = requested.strip().lower()
    if name in SPECS:
        return name, f"{name} was requested"
    if name != AUTO:
        valid = [AUTO, *BACKENDS]
        raise UnknownBackendError(
            f"unknown pose backend {requested!r}; valid: {', '.join(valid)}", {"valid": valid}
        )
    has_cuda = _cuda_available() if cuda_available is None else cuda_available
    if has_cuda:
        return "yolo", "auto: CUDA is available, so the multi-person YOLO backend runs on the GPU"
    return "mediapipe", "auto: no CUDA device, so the single-person MediaPipe backend runs on the CPU"


def backend_spec(name: str) -> BackendSpec:
    """The spec of ``name`` (``"auto"`` resolved first).

    Raises:
        UnknownBackendError: an unknown name.
    """
    return SPECS[resolve_backend(name)[0]]


def create_detector(name: str, **options: Any) -> Detector:
    """Build (not set up) the backend ``name`` with its own constructor ``options``.

    Raises:
        ValueError: an unknown name, or options the backend rejects.
    """
    spec = backend_spec(name)
    try:
        return spec.factory(**options)
    except TypeError as exc:  # an option the backend does not take
        raise ValueError(f"invalid options for the {spec.name} backend: {exc}") from exc


def build_detector(name: str, options: DetectorOptions) -> Detector:
    """Build (not set up) the backend ``name`` from the common ``options``.

    Raises:
        ValueError: an unknown name, or an option value the backend rejects.
    """
    spec = backend_spec(name)
    return create_detector(spec.name, **spec.options(options))


def angle_tolerance(backend: str) -> float:
    """The angle error (degrees) the form scorer allows ``backend``'s keypoint model (``BackendSpec``).

    Raises:
        UnknownBackendError: an unknown name.
    """
    return backend_spec(backend).angle_tolerance_deg


def multi_person(backend: str) -> bool:
    """Whether ``backend`` reports several people per frame (``BackendSpec.multi_person``).

    Raises:
        UnknownBackendError: an unknown name.
    """
    return backend_spec(backend).multi_person


def create_tracker(backend: str) -> Tracker:
    """The tracker suited to ``backend``'s detector (``"auto"`` resolved as ``resolve_backend`` does).

    Raises:
        UnknownBackendError: an unknown name.
    """
    return backend_spec(backend).tracker()
