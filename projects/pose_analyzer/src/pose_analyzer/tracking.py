"""Stable person ids within one stream.

Each tracker keeps the people it has seen and matches the next frame's people to them
by a similarity in [0, 1], with an optimal (Hungarian) assignment.  A track not matched
for more than ``max_age_s`` seconds is forgotten: whoever appears afterwards gets a new id.

- ``IoUTracker``: box overlap with the track's last box.  Enough for one person.
- ``PoseTracker``: the better of box overlap (box moved by the track's velocity) and
  keypoint similarity (COCO OKS), then a second pass by box-centre distance for tracks
  the first pass could not place.  For multi-person YOLO output.
- ``SinglePersonTracker``: for a backend that finds at most one person (MediaPipe):
  that person is always track 1, however long they were lost and wherever they came back.

Confirmation: a new track is *tentative* until it has been matched on ``min_hits``
frames spanning at least ``min_duration_s`` seconds, without a miss (a tentative track
not matched on a frame is dropped); ``is_confirmed`` says when it is.
On a one-person clip YOLO reports short-lived "ghost" people (a fragment of a limb, a
reflection) that live 1 to 8 frames, i.e. under 0.27 s at 30 fps: the defaults (3 hits
over 0.3 s) never confirm them, and confirm a real person within 0.3 s whatever the
frame rate.  The engine analyses tentative tracks (so a person's counter sees their
first frames) but reports, stores and counts only confirmed ones.

A confirmed track that is lost is kept ``keep_lost_s`` seconds (at least ``max_age_s``)
and can then only be recovered by position (the box-centre pass): a person lost briefly
and found again where they were keeps their id, and with it their rep count.

Ultralytics' BYTETracker was the first choice for YOLO, but importing it needs the
``lap`` package, which this environment does not have (and ultralytics would try to
pip-install it at import time); see docs/detection.md for how PoseTracker compares.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from pose_analyzer.detection.metrics import object_keypoint_similarity
from pose_analyzer.keypoints import NUM_COCO_KEYPOINTS
from pose_analyzer.types import Person

_MIN_KEYPOINT_CONFIDENCE = 0.3
_MIN_SHARED_KEYPOINTS = 4
# A velocity is extrapolated at most this long: beyond it a guess is worse than the last box.
_MAX_EXTRAPOLATION_S = 0.3
# Weight of the newest box difference in the velocity estimate (exponential smoothing).
_VELOCITY_SMOOTHING = 0.5


class Tracker(Protocol):
    """Gives the people of consecutive frames of ONE stream stable ``track_id``s."""

    def update(self, people: list[Person], timestamp: float) -> list[Person]:
        """Set ``track_id`` on each person of the frame at ``timestamp`` (seconds) and return them."""

    def is_confirmed(self, track_id: int) -> bool:
        """Whether ``track_id`` is a confirmed person (seen long enough), not a tentative track."""


@dataclass(slots=True)
class _Track:
    track_id: int
    box: npt.NDArray[np.float64]
    velocity: npt.NDArray[np.float64]
    keypoints: npt.NDArray[np.float32]
    last_seen: float
    first_seen: float
    hits: int = 1
    confirmed: bool = False


Similarity = Callable[[_Track, Person, float], float]


@dataclass(frozen=True, slots=True)
class Confirmation:
    """When a track becomes a person, and how long a lost person is waited for.

    A track is confirmed once matched on ``min_hits`` frames spanning at least
    ``min_duration_s``.  A confirmed track unseen for longer than the tracker's
    ``max_age_s`` but at most ``keep_lost_s`` can still be recovered by position.

    Raises:
        ValueError: ``min_hits`` under 1, or a negative duration.
    """

    min_hits: int = 3
    min_duration_s: float = 0.3
    keep_lost_s: float = 0.0

    def __post_init__(self) -> None:
        if self.min_hits < 1:
            raise ValueError(f"min_hits must be at least 1, got {self.min_hits}")
        if not (self.min_duration_s >= 0 and self.keep_lost_s >= 0):
            raise ValueError(
                f"durations must be non-negative, got {self.min_duration_s} and {self.keep_lost_s}"
            )

    def confirms(self, hits: int, duration_s: float) -> bool:
        """Whether a track matched on ``hits`` frames over ``duration_s`` seconds is a person."""
        # The tolerance absorbs timestamps built as index / fps (9 / 30 is not exactly 0.3).
        return hits >= self.min_hits and duration_s >= self.min_duration_s - 1e-9


def box_iou(
    a: npt.NDArray[np.floating[Any]] | Sequence[float], b: npt.NDArray[np.floating[Any]] | Sequence[float]
) -> float:
    """Intersection over union of two xyxy boxes; 0.0 when either is empty."""
    # Plain floats: numpy scalar arithmetic costs more than the IoU itself (same IEEE results).
    ax1, ay1, ax2, ay2 = (float(v) for v in a[:4])
    bx1, by1, bx2, by2 = (float(v) for v in b[:4])
    width = min(ax2, bx2) - max(ax1, bx1)
    height = min(ay2, by2) - max(ay1, by1)
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return inter / union if union > 0 else 0.0


class _TrackSet:
    """Track bookkeeping shared by the trackers: assignment, new ids, ageing."""

    def __init__(
        self,
        similarity: Similarity,
        min_similarity: float,
        max_age_s: float,
        recovery_distance: float | None = None,
        confirmation: Confirmation | None = None,
    ) -> None:
        if not 0.0 < min_similarity <= 1.0:
            raise ValueError(f"min_similarity must be in (0, 1], got {min_similarity}")
        if max_age_s <= 0:
            raise ValueError(f"max_age_s must be positive, got {max_age_s}")
        if recovery_distance is not None and recovery_distance <= 0:
            raise ValueError(f"recovery_distance must be positive, got {recovery_distance}")
        self._confirmation = confirmation or Confirmation()
        self._keep_lost_s = max(self._confirmation.keep_lost_s, max_age_s)
        self._confirmed_ids: set[int] = set()
        self._similarity = similarity
        self._recovery_distance = recovery_distance
        self._min_similarity = min_similarity
        self._max_age_s = max_age_s
        self._tracks: list[_Track] = []
        self._next_id = 1
        self._last_timestamp: float | None = None

    def update(self, people: list[Person], timestamp: float) -> list[Person]:
        if self._last_timestamp is not None and timestamp < self._last_timestamp:
            raise ValueError(f"timestamps must not go back: {timestamp} after {self._last_timestamp}")
        self._last_timestamp = timestamp
        self._tracks = [t for t in self._tracks if timestamp - t.last_seen <= self._age_limit(t)]

        matched = self._associate(people, timestamp)
        if self._recovery_distance is not None:
            matched |= self._recover(people, matched)

        # A tentative track missed on this frame is dropped (as SORT does): a flickering ghost
        # must not add up hits over separate sightings.
        kept = {id(t) for t in matched.values()}
        self._tracks = [t for t in self._tracks if t.confirmed or id(t) in kept]
        for index, person in enumerate(people):
            box = np.asarray(person.box, dtype=np.float64)
            track = matched.get(index)
            if track is None:
                keypoints = person.keypoints.copy()
                track = _Track(self._next_id, box, np.zeros(4), keypoints, timestamp, timestamp)
                self._next_id += 1
                self._tracks.append(track)
            else:
                elapsed = timestamp - track.last_seen
                if elapsed > 0:
                    step = (box - track.box) / elapsed
                    track.velocity = _VELOCITY_SMOOTHING * step + (1 - _VELOCITY_SMOOTHING) * track.velocity
                track.box, track.keypoints, track.last_seen = box, person.keypoints.copy(), timestamp
                track.hits += 1
            if not track.confirmed and self._confirmation.confirms(track.hits, timestamp - track.first_seen):
                track.confirmed = True
                self._confirmed_ids.add(track.track_id)
            person.track_id = track.track_id
        return people

    def is_confirmed(self, track_id: int) -> bool:
        return track_id in self._confirmed_ids

    def _age_limit(self, track: _Track) -> float:
        return self._keep_lost_s if track.confirmed else self._max_age_s

    def _live(self, timestamp: float) -> list[_Track]:
        """Tracks the first pass may match: seen within ``max_age_s`` (lost ones wait for ``_recover``)."""
        return [t for t in self._tracks if timestamp - t.last_seen <= self._max_age_s]

    def _associate(self, people: list[Person], timestamp: float) -> dict[int, _Track]:
        """Person index -> track: confirmed tracks first, then tentative ones on who is left.

        A matching cascade (as DeepSORT's): a tentative track must never take a confirmed
        person's detection.  Measured on the shared curl clip: YOLO reported the athlete
        twice on one frame (a box with the barbell and one without, overlapping at IoU
        0.69, just under its NMS threshold); the extra box opened a tentative track that
        fitted the next frame's box better than the athlete's own track, took it, and the
        athlete lost his id (and his rep in progress) mid-rep.
        """
        live = self._live(timestamp)
        matched = self._assign([t for t in live if t.confirmed], people, {}, timestamp)
        return self._assign([t for t in live if not t.confirmed], people, matched, timestamp)

    def _assign(
        self, tracks: list[_Track], people: list[Person], matched: dict[int, _Track], timestamp: float
    ) -> dict[int, _Track]:
        """``matched`` plus the best total-similarity assignment of ``tracks`` to the people it leaves."""
        free = [i for i in range(len(people)) if i not in matched]
        if not tracks or not free:
            return matched
        found = self._best_assignment(tracks, [people[i] for i in free], timestamp)
        return {**matched, **{free[i]: track for i, track in found.items()}}

    def _best_assignment(
        self, tracks: list[_Track], people: list[Person], timestamp: float
    ) -> dict[int, _Track]:
        """Person index -> track, by the best total similarity above the minimum."""
        score = np.array([[self._similarity(t, p, timestamp) for p in people] for t in tracks])
        if score.shape == (1, 1):
            # One track, one person (every MediaPipe frame): the assignment is that pair.
            rows, cols = np.zeros(1, dtype=np.intp), np.zeros(1, dtype=np.intp)
        else:
            rows, cols = linear_sum_assignment(score, maximize=True)
        return {
            int(col): tracks[int(row)]
            for row, col in zip(rows, cols, strict=True)
            if score[row, col] >= self._min_similarity
        }

    def _recover(self, people: list[Person], matched: dict[int, _Track]) -> dict[int, _Track]:
        """Second chance for what the first pass left: nearest box centres, scaled by track size.

        Catches a person whose box and pose both changed a lot while unseen (a flip, a
        fall, a crouch): overlap and OKS say "someone else", position says "same one".
        """
        taken = {id(track) for track in matched.values()}
        tracks = [t for t in self._tracks if id(t) not in taken]
        free = [i for i in range(len(people)) if i not in matched]
        if not tracks or not free or self._recovery_distance is None:
            return {}
        distance = np.array(
            [
                [_centre_distance(t.box, np.asarray(people[i].box, dtype=np.float64)) for i in free]
                for t in tracks
            ]
        )
        rows, cols = linear_sum_assignment(distance)
        return {
            free[int(col)]: tracks[int(row)]
            for row, col in zip(rows, cols, strict=True)
            if distance[row, col] <= self._recovery_distance
        }


def _centre_distance(track_box: npt.NDArray[np.float64], box: npt.NDArray[np.float64]) -> float:
    """Distance between box centres in units of the track box's size (square root of its area)."""
    size = float(np.sqrt(max((track_box[2] - track_box[0]) * (track_box[3] - track_box[1]), 1.0)))
    dx = (track_box[0] + track_box[2] - box[0] - box[2]) / 2
    dy = (track_box[1] + track_box[3] - box[1] - box[3]) / 2
    return float(np.hypot(dx, dy)) / size


def _iou_similarity(track: _Track, person: Person, timestamp: float) -> float:
    return box_iou(track.box, person.box)


def _pose_similarity(track: _Track, person: Person, timestamp: float) -> float:
    elapsed = min(timestamp - track.last_seen, _MAX_EXTRAPOLATION_S)
    predicted = track.box + track.velocity * elapsed
    iou = box_iou(predicted, person.box)
    return max(iou, keypoint_similarity(track.keypoints, person.keypoints, track.box))


def keypoint_similarity(
    previous: npt.NDArray[np.float32], current: npt.NDArray[np.float32], previous_box: npt.NDArray[np.float64]
) -> float:
    """OKS between two poses of our layout over the COCO points both see confidently.

    The previous box's area sets the scale.  Returns 0.0 when fewer than four points are
    seen in both (too few to tell people apart).
    """
    a, b = previous[:NUM_COCO_KEYPOINTS], current[:NUM_COCO_KEYPOINTS]
    shared = (a[:, 2] >= _MIN_KEYPOINT_CONFIDENCE) & (b[:, 2] >= _MIN_KEYPOINT_CONFIDENCE)
    shared &= np.isfinite(a[:, :2]).all(axis=1) & np.isfinite(b[:, :2]).all(axis=1)
    area = float((previous_box[2] - previous_box[0]) * (previous_box[3] - previous_box[1]))
    if int(shared.sum()) < _MIN_SHARED_KEYPOINTS or area <= 0:
        return 0.0
    return object_keypoint_similarity(np.nan_to_num(b), np.nan_to_num(a), shared, area)


class IoUTracker:
    """Matches people to tracks by box IoU (at least ``iou_threshold``).

    With ``recovery_distance`` set, people left over are then matched to tracks left over
    whose box centre lies within that many box sizes (square root of the box area).

    Raises:
        ValueError: a threshold outside (0, 1] or a non-positive ``max_age_s``.
    """

    def __init__(
        self,
        iou_threshold: float = 0.3,
        max_age_s: float = 1.0,
        recovery_distance: float | None = None,
        confirmation: Confirmation | None = None,
    ) -> None:
        self._tracks = _TrackSet(_iou_similarity, iou_threshold, max_age_s, recovery_distance, confirmation)

    def update(self, people: list[Person], timestamp: float) -> list[Person]:
        """Set ``track_id`` on each person and return them.

        Raises:
            ValueError: ``timestamp`` earlier than the previous call's.
        """
        return self._tracks.update(people, timestamp)

    def is_confirmed(self, track_id: int) -> bool:
        """Whether ``track_id`` has been confirmed (see ``Confirmation``)."""
        return self._tracks.is_confirmed(track_id)


class PoseTracker:
    """Matches people to tracks by the better of motion-predicted box IoU and keypoint OKS.

    People left over are then matched to tracks left over by box centre distance (at
    most ``recovery_distance`` box sizes): measured on a real clip, this keeps the id
    of a man through a back flip, where neither his box nor his pose resembles the last.

    Raises:
        ValueError: a threshold outside (0, 1] or a non-positive ``max_age_s``.
    """

    def __init__(
        self,
        min_similarity: float = 0.3,
        max_age_s: float = 1.0,
        recovery_distance: float = 1.0,
        confirmation: Confirmation | None = None,
    ) -> None:
        self._tracks = _TrackSet(_pose_similarity, min_similarity, max_age_s, recovery_distance, confirmation)

    def update(self, people: list[Person], timestamp: float) -> list[Person]:
        """Set ``track_id`` on each person and return them.

        Raises:
            ValueError: ``timestamp`` earlier than the previous call's.
        """
        return self._tracks.update(people, timestamp)

    def is_confirmed(self, track_id: int) -> bool:
        """Whether ``track_id`` has been confirmed (see ``Confirmation``)."""
        return self._tracks.is_confirmed(track_id)


class SinglePersonTracker:
    """For a backend that finds at most one person: that person is always track ``1``.

    A one-person detector has nobody to confuse the athlete with, so matching by
    overlap can only lose them (a flip, a fast turn, a brief occlusion gave a kata two
    ids).  Should a frame hold several people, the most confident one is kept and the
    others are dropped (returned without them).  Confirmed from the first frame.
    """

    TRACK_ID = 1

    def __init__(self) -> None:
        self._last_timestamp: float | None = None

    def update(self, people: list[Person], timestamp: float) -> list[Person]:
        """Give the most confident person track 1 and return it alone (or nobody).

        Raises:
            ValueError: ``timestamp`` earlier than the previous call's.
        """
        if self._last_timestamp is not None and timestamp < self._last_timestamp:
            raise ValueError(f"timestamps must not go back: {timestamp} after {self._last_timestamp}")
        self._last_timestamp = timestamp
        if not people:
            return []
        person = max(people, key=lambda p: p.score)
        person.track_id = self.TRACK_ID
        return [person]

    def is_confirmed(self, track_id: int) -> bool:
        """Track 1 is the person; there is no other."""
        return track_id == self.TRACK_ID
