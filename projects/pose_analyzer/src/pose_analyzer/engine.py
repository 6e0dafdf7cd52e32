"""The per-stream pipeline shared by the CLI and the service.

cuts -> track -> smooth (per person) -> biomechanics -> reps, from detections made elsewhere
(the engine owns no detector: the service's detection paths, or ``detect_and_analyse`` for the
CLI).  One ``PoseEngine`` belongs to one stream: its cut detector, smoothers and rep counters
carry state from frame to frame (smoothers and counters per track id).

- Cuts: the engine owns a ``FrameCutDetector`` and sees each frame's image, so a scene cut
  or camera switch (or one person's box jumping between consecutive frames, ``box_jump``)
  is marked on the rep counters (``RepCounter.mark_cut``) and restarts the smoothers:
  nothing is joined across it.  The image never leaves ``analyse``.
- Confirmed people only: every track is analysed from its first frame (its counter sees the
  start of its first rep), but ``FrameAnalysis.people``, ``reps()`` and ``track_ids()`` hold
  only tracks the tracker confirmed (``Tracker.is_confirmed``): ghost detections never reach
  the output, the database or a summary.
- Reference rep: with a coach's ``ReferenceMotion`` every counted rep is compared with it by
  DTW over the rep's span of the reference's angles (``RepRecord.reference``).
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from pose_analyzer.biomechanics.angles import ANGLE_NAMES, JOINT_ANGLES
from pose_analyzer.biomechanics.measures import body_measures_xy
from pose_analyzer.biomechanics.person import angles_and_com
from pose_analyzer.biomechanics.symmetry import symmetry_indices
from pose_analyzer.cuts import FrameCutDetector, box_jump
from pose_analyzer.detection.base import Detector
from pose_analyzer.exercises.counter import RepCounter
from pose_analyzer.exercises.definition import ExerciseDefinition, Side, load_exercise
from pose_analyzer.exercises.reference import ReferenceMotion
from pose_analyzer.exercises.scoring import FormScorer
from pose_analyzer.output import person_track_id
from pose_analyzer.posture import posture_columns
from pose_analyzer.smoothing import KeypointSmoother, SmoothingConfig
from pose_analyzer.tracking import Tracker
from pose_analyzer.types import (
    Detections,
    Frame,
    FrameAnalysis,
    Person,
    PersonAnalysis,
    RejectedRep,
    RepRecord,
)

FloatArray = npt.NDArray[np.floating[Any]]

# A track unseen for this long loses its smoother (its next position is a fresh start);
# its rep counter and reps are kept for ``reps()``.
_SMOOTHER_EXPIRY_S = 2.0
# A reference angle is compared on a rep only when seen on at least this fraction of its frames.
_MIN_SEEN_FRACTION = 0.5


@dataclass(slots=True)
class _TrackState:
    smoother: KeypointSmoother
    counter: RepCounter | None
    last_seen: float
    previous_angles: list[float] | None = None
    previous_t: float | None = None
    previous_box: tuple[float, float, float, float] | None = None
    confirmed: bool = False
    reported_rejections: int = 0
    # (timestamp, the reference's angles) of recent frames, when reps are compared with a reference.
    history: deque[tuple[float, FloatArray]] = field(default_factory=deque)

    def restart(self, smoothing: SmoothingConfig) -> None:
        """Forget the motion so far (a cut, or a long absence): the next frame starts afresh."""
        self.smoother = KeypointSmoother(smoothing)
        self.previous_angles = None
        self.previous_t = None
        self.previous_box = None
        self.history.clear()


class PoseEngine:
    """Per-stream pose analysis: keypoints in, angles, kinematics, reps and form scores out.

    ``exercise`` is a definition or the name of a shipped one (``load_exercise`` raises
    ValueError for an unknown name).  Without a ``tracker`` each person gets its index
    in the detector's output as track id, which is stable only for single-person
    backends.  ``person_of_interest`` is the track id ``rep_count()``/``reps()`` report
    by default.  ``detect_cuts`` (default on) runs the frame cut test on every image;
    ``cuts`` lists the timestamps of the frames that followed a cut.  ``angle_tolerance_deg``
    is the keypoint model's known angle error, allowed by the form scorer
    (``detection.registry.angle_tolerance``).
    """

    def __init__(
        self,
        tracker: Tracker | None = None,
        exercise: ExerciseDefinition | str | None = None,
        smoothing: SmoothingConfig | None = None,
        person_of_interest: int | None = None,
        detect_cuts: bool = True,
        reference: ReferenceMotion | None = None,
        angle_tolerance_deg: float = 0.0,
    ) -> None:
        self.tracker = tracker
        self.angle_tolerance_deg = angle_tolerance_deg
        self.exercise = load_exercise(exercise) if isinstance(exercise, str) else exercise
        self.smoothing = smoothing or SmoothingConfig()
        self.person_of_interest = person_of_interest
        self.cuts: list[float] = []
        self._cut_detector = FrameCutDetector() if detect_cuts else None
        self._previous_frame_t: float | None = None
        self._tracks: dict[int, _TrackState] = {}
        self.reference = reference
        self._reference_columns = reference_columns(reference)
        self._history_s = 0.0
        if self.exercise is not None:
            steps = self.exercise.combination.steps if self.exercise.combination else 1
            self._history_s = self.exercise.max_rep_s * steps + 1.0
        self._driver_sides, self._driver_keypoints = self._driver_triples()
        self._each_side = self.exercise is not None and self.exercise.driver.side is Side.EACH
        self._best_side = self.exercise is not None and self.exercise.driver.side is Side.BEST

    def _driver_triples(self) -> tuple[tuple[str, ...], tuple[tuple[int, int, int], ...]]:
        """The sides of the driver angle and their keypoints (one triple per side), whose confidence
        picks the 'best' side."""
        if self.exercise is None:
            return (), ()
        name = self.exercise.driver.angle
        sides = tuple(side for side in ("left", "right") if f"{side}_{name}" in JOINT_ANGLES)
        triples = tuple((int(a), int(b), int(c)) for a, b, c in (JOINT_ANGLES[f"{s}_{name}"] for s in sides))
        return sides, triples

    def _compare_with_reference(self, state: _TrackState, rep: RepRecord) -> None:
        """Score ``rep`` against the reference over the frames of its span.

        Only the reference's angles seen on at least half of those frames are compared (a
        side view hides one elbow: the other one is still compared); their gaps are filled
        by linear interpolation.  No angle seen enough: the rep has no reference comparison.
        """
        if self.reference is None:
            return
        rows = [v for t, v in state.history if rep.start_time <= t <= rep.end_time]
        if len(rows) < 2:
            return
        span = np.stack(rows)
        finite = np.isfinite(span)
        seen = np.flatnonzero(finite.mean(axis=0) >= _MIN_SEEN_FRACTION)
        if seen.size == 0:
            return
        steps = np.arange(span.shape[0])
        columns = [np.interp(steps, steps[finite[:, j]], span[finite[:, j], j]) for j in seen]
        reference = self.reference
        if seen.size < len(reference.angles):
            reference = ReferenceMotion(
                tuple(reference.angles[j] for j in seen), reference.series[:, seen], reference.tolerance_deg
            )
        rep.reference = reference.compare(np.stack(columns, axis=1))

    def analyse(self, frame: Frame, detections: Detections) -> FrameAnalysis:
        """Track, smooth and analyse people already detected in ``frame``."""
        height, width = frame.image.shape[:2]
        t = frame.timestamp
        timings = {"cuts": 0.0, "track": 0.0, "smooth": 0.0, "biomechanics": 0.0, "reps": 0.0}

        start = time.perf_counter()
        if self._is_cut(frame):
            self.cuts.append(t)
            for state in self._tracks.values():
                self._cut_track(state, t)
        timings["cuts"] = (time.perf_counter() - start) * 1000.0

        start = time.perf_counter()
        people = list(detections.people)
        if self.tracker is not None:
            people = self.tracker.update(people, t)
        else:
            for i, p in enumerate(people):
                if p.track_id is None:
                    p.track_id = i
        timings["track"] = (time.perf_counter() - start) * 1000.0

        results = []
        for person in people:
            analysis, confirmed = self._analyse_person(person, t, timings)
            if confirmed:
                results.append(analysis)
        self._previous_frame_t = t
        self._expire(t)
        return FrameAnalysis(
            index=frame.index,
            timestamp=t,
            width=int(width),
            height=int(height),
            people=results,
            timings_ms=timings,
        )

    def _is_cut(self, frame: Frame) -> bool:
        image = frame.image
        if self._cut_detector is None or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            return False
        if image.size == 0:
            return False
        # The sample taken at decode when there is one (see cuts.py for its cost).
        return self._cut_detector.update(image, frame.cut_sample)

    def _cut_track(self, state: _TrackState, t: float) -> None:
        if state.counter is not None:
            state.counter.mark_cut(t)
        state.restart(self.smoothing)

    def _state(self, track_id: int, t: float) -> _TrackState:
        state = self._tracks.get(track_id)
        if state is None:
            counter = None
            if self.exercise is not None:
                counter = RepCounter(self.exercise, FormScorer(self.exercise, self.angle_tolerance_deg))
            state = _TrackState(KeypointSmoother(self.smoothing), counter, t)
            self._tracks[track_id] = state
        elif t - state.last_seen > _SMOOTHER_EXPIRY_S:
            state.restart(self.smoothing)
        state.last_seen = t
        if not state.confirmed:
            state.confirmed = self.tracker is None or self.tracker.is_confirmed(track_id)
        return state

    def _check_box_jump(self, state: _TrackState, box: tuple[float, float, float, float], t: float) -> None:
        """A box jump between this frame and the previous one (the person was on both) is a cut."""
        if not _is_box(box):
            return
        previous, state.previous_box = state.previous_box, box
        if previous is None or state.previous_t is None or state.previous_t != self._previous_frame_t:
            return
        if box_jump(previous, box):
            self._cut_track(state, t)
            state.previous_box = box

    def _analyse_person(
        self, person: Person, t: float, timings: dict[str, float]
    ) -> tuple[PersonAnalysis, bool]:
        state = self._state(person_track_id(person), t)
        box = (float(person.box[0]), float(person.box[1]), float(person.box[2]), float(person.box[3]))
        self._check_box_jump(state, box, t)

        start = time.perf_counter()
        keypoints = state.smoother.update(person.keypoints, t)
        smoothed = Person(keypoints, person.box, person.score, person.track_id, person.native)
        mid = time.perf_counter()
        timings["smooth"] += (mid - start) * 1000.0

        # Plain floats from one ``tolist``: angles, centre, measures and rates of a single person
        # cost less so than as numpy calls on (21, 2) arrays (see biomechanics/person.py).
        x, y, confidence = keypoints.T.tolist()
        values, com = angles_and_com(x, y)
        angles = dict(zip(ANGLE_NAMES, values, strict=True))
        velocity: dict[str, float] = {}
        previous = state.previous_angles
        if previous is not None and state.previous_t is not None and t > state.previous_t:
            dt = t - state.previous_t
            for name, v, p in zip(ANGLE_NAMES, values, previous, strict=True):
                velocity[name] = (v - p) / dt
        state.previous_angles, state.previous_t = values, t
        measures = body_measures_xy(x, y)
        measures.update(symmetry_indices(angles))
        end = time.perf_counter()
        timings["biomechanics"] += (end - mid) * 1000.0

        analysis = PersonAnalysis(
            person=smoothed,
            angles=angles,
            angular_velocity=velocity,
            center_of_mass=com,
            measures=measures,
        )
        counter = state.counter
        if counter is not None:
            # Mean confidence of each side's three keypoints (the smoother keeps the detector's), which
            # the counter reads only to follow the best-seen side.
            visibility = {}
            if self._best_side:
                for side, (a, b, c) in zip(self._driver_sides, self._driver_keypoints, strict=True):
                    visibility[side] = (confidence[a] + confidence[b] + confidence[c]) / 3
            if self.reference is not None:
                state.history.append((t, np.array(values)[self._reference_columns]))
                while state.history and t - state.history[0][0] > self._history_s:
                    state.history.popleft()
            posture = None
            if counter.needs_posture:
                posture = posture_columns(x, y, confidence, names=counter.posture_names)
            rep = counter.update(t, angles, measures, visibility, posture=posture)
            if rep is not None:
                self._compare_with_reference(state, rep)
            analysis.rep_count = counter.count
            analysis.phase = counter.phase
            analysis.new_rep = rep
            analysis.last_rep = rep if rep is not None else (counter.reps[-1] if counter.reps else None)
            rejected = counter.rejected
            if len(rejected) > state.reported_rejections:
                analysis.new_rejected = rejected[state.reported_rejections :]
                state.reported_rejections = len(rejected)
            analysis.last_rejected = rejected[-1] if rejected else None
            if self._each_side:
                analysis.count_by_side = counter.count_by_side()
        timings["reps"] += (time.perf_counter() - end) * 1000.0
        return analysis, state.confirmed

    def _expire(self, t: float) -> None:
        """Forget tracks that never completed a rep and have been gone a long time (bounded memory);
        tentative tracks (never confirmed) as soon as their smoother would expire."""
        stale = []
        for tid, s in self._tracks.items():
            gone = t - s.last_seen
            if (not s.confirmed and gone > _SMOOTHER_EXPIRY_S) or (
                gone > 10 * _SMOOTHER_EXPIRY_S and (s.counter is None or s.counter.count == 0)
            ):
                stale.append(tid)
        for tid in stale:
            del self._tracks[tid]

    def _confirmed(self) -> dict[int, _TrackState]:
        return {tid: s for tid, s in self._tracks.items() if s.confirmed}

    def _default_track(self) -> int | None:
        if self.person_of_interest is not None:
            return self.person_of_interest
        counted = [(s.counter.count if s.counter else 0, -tid, tid) for tid, s in self._confirmed().items()]
        return max(counted)[2] if counted else None

    def _counter(self, track_id: int | None) -> RepCounter | None:
        tid = self._default_track() if track_id is None else track_id
        state = self._confirmed().get(tid) if tid is not None else None
        return state.counter if state is not None else None

    def reps(self, track_id: int | None = None) -> list[RepRecord]:
        """Completed reps of ``track_id`` (default: the person of interest, else the one with most reps)."""
        counter = self._counter(track_id)
        return list(counter.reps) if counter is not None else []

    def rejected(self, track_id: int | None = None) -> list[RejectedRep]:
        """Candidate reps of ``track_id`` that did not count, with their reasons (default as in ``reps``)."""
        counter = self._counter(track_id)
        return list(counter.rejected) if counter is not None else []

    def count_by_side(self, track_id: int | None = None) -> dict[str, int]:
        """Counted reps per body side of ``track_id`` (default as in ``reps``)."""
        counter = self._counter(track_id)
        return counter.count_by_side() if counter is not None else {}

    def rep_count(self, track_id: int | None = None) -> int:
        """Number of completed reps of ``track_id`` (default as in ``reps``)."""
        return len(self.reps(track_id))

    def track_ids(self) -> list[int]:
        """Confirmed track ids the engine currently holds state for."""
        return sorted(self._confirmed())


def reference_columns(reference: ReferenceMotion | None) -> npt.NDArray[np.intp]:
    """Columns of the engine's angle vector (``ANGLE_NAMES``) that ``reference`` compares.

    Raises:
        ValueError: the reference names an angle the engine does not measure.
    """
    if reference is None:
        return np.empty(0, dtype=np.intp)
    unknown = [a for a in reference.angles if a not in ANGLE_NAMES]
    if unknown:
        raise ValueError(f"unknown angle(s) {', '.join(unknown)}; known: {', '.join(ANGLE_NAMES)}")
    return np.array([ANGLE_NAMES.index(a) for a in reference.angles], dtype=np.intp)


def _is_box(box: tuple[float, float, float, float]) -> bool:
    x1, y1, x2, y2 = box
    return math.isfinite(x1 + y1 + x2 + y2) and x2 > x1 and y2 > y1


def detect_and_analyse(detector: Detector, engine: PoseEngine, frame: Frame) -> FrameAnalysis:
    """Detect the people of one frame with ``detector`` (owned by the caller), then analyse them
    with ``engine``; ``timings_ms["detect"]`` is the detector's time."""
    start = time.perf_counter()
    detections = detector.detect([frame])[0]
    detect_ms = (time.perf_counter() - start) * 1000.0
    analysis = engine.analyse(frame, detections)
    analysis.timings_ms = {"detect": detect_ms, **analysis.timings_ms}
    return analysis
