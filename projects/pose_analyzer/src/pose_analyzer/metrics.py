"""Prometheus metrics of live streams, registered on the service's own registry.

The ``stream`` label is bounded: the first ``max_stream_labels`` distinct stream ids keep
their own label, every later one is counted under ``"other"`` (clients choose stream ids,
so an unbounded label would grow the registry without limit).  The rejected-rep counter's
labels are bounded too: exercises are the shipped definitions, and reasons are the counter's
codes (``exercises.counter.REASONS``) plus the exercises' precondition codes; anything else
is counted under ``"other"``.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from pose_analyzer.exercises.counter import REASONS
from pose_analyzer.exercises.definition import available_exercises, load_exercise
from pose_analyzer.types import RejectedRep

OTHER_STREAMS = "other"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)
# Fine around the fleet's goal (a rep committed within 250 ms of its last frame's arrival).
_REP_COMMIT_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.125,
    0.15,
    0.175,
    0.2,
    0.225,
    0.25,
    0.3,
    0.4,
    0.5,
    1.0,
    2.5,
)
_BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
_SCORE_BUCKETS = (10, 20, 30, 40, 50, 60, 70, 80, 90, 100)
_TRIANGULATION_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
_REPROJECTION_BUCKETS = (0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 100)


class StreamMetrics:
    """The stream metrics of one service instance."""

    def __init__(self, registry: CollectorRegistry, max_stream_labels: int = 16) -> None:
        self.max_stream_labels = max_stream_labels
        self._labels: set[str] = set()
        self.frames_received = Counter(
            "pose_stream_frames_received", "Frames received from cameras", ["stream"], registry=registry
        )
        self.frames_processed = Counter(
            "pose_stream_frames_processed", "Frames analysed and answered", ["stream"], registry=registry
        )
        self.frames_dropped = Counter(
            "pose_stream_frames_dropped",
            "Frames replaced by a newer one before analysis (latest-frame-wins)",
            ["stream"],
            registry=registry,
        )
        self.decode_seconds = Histogram(
            "pose_stream_decode_seconds",
            "Time to decode one frame",
            registry=registry,
            buckets=_LATENCY_BUCKETS,
        )
        self.inference_seconds = Histogram(
            "pose_stream_inference_seconds",
            "Time of one detector call (one batch)",
            ["backend"],
            registry=registry,
            buckets=_LATENCY_BUCKETS,
        )
        self.end_to_end_seconds = Histogram(
            "pose_stream_end_to_end_latency_seconds",
            "From a frame's arrival to its answer being sent",
            ["stream"],
            registry=registry,
            buckets=_LATENCY_BUCKETS,
        )
        self.rep_commit_seconds = Histogram(
            "pose_stream_rep_commit_seconds",
            "From the arrival of the frame that completed a rep to the rep's commit returning",
            registry=registry,
            buckets=_REP_COMMIT_BUCKETS,
        )
        self.active_streams = Gauge("pose_stream_active_streams", "Open camera streams", registry=registry)
        self.batch_size = Histogram(
            "pose_stream_batch_size_frames",
            "Frames per detector call of the shared batched backend",
            registry=registry,
            buckets=_BATCH_BUCKETS,
        )
        self.reps = Counter("pose_stream_reps", "Repetitions counted", ["exercise"], registry=registry)
        self.form_score = Histogram(
            "pose_stream_form_score_percent",
            "Form score (0-100) of completed repetitions",
            ["exercise"],
            registry=registry,
            buckets=_SCORE_BUCKETS,
        )
        self.rejected_reps = Counter(
            "pose_stream_rejected_reps",
            "Candidate repetitions that did not count, by exercise and reason code",
            ["exercise", "reason"],
            registry=registry,
        )
        self._reasons = _known_reasons()
        self._exercises = set(available_exercises())
        self.websocket_errors = Counter(
            "pose_stream_websocket_errors",
            "Refused messages and closed streams",
            ["reason"],
            registry=registry,
        )

        self.triangulation_seconds = Histogram(
            "pose_3d_triangulation_seconds",
            "Time to triangulate and analyse one synchronised group of a 3D session",
            registry=registry,
            buckets=_TRIANGULATION_BUCKETS,
        )
        self.reprojection_error_px = Histogram(
            "pose_3d_reprojection_error_pixels",
            "Mean reprojection error (pixels) of one triangulated moment of a 3D session",
            registry=registry,
            buckets=_REPROJECTION_BUCKETS,
        )
        self.sync_lateness_seconds = Histogram(
            "pose_3d_sync_lateness_seconds",
            "How long after its group's first frame a camera's frame arrived (3D sessions)",
            registry=registry,
            buckets=_LATENCY_BUCKETS,
        )
        self.sync_groups = Counter(
            "pose_3d_groups",
            "Synchronised groups of 3D sessions by outcome (complete, partial, single)",
            ["outcome"],
            registry=registry,
        )

    def count_group(self, outcome: str, lateness_s: Iterable[float]) -> None:
        """One synchronised group of a 3D session: its outcome and each camera's lateness."""
        self.sync_groups.labels(outcome).inc()
        for late in lateness_s:
            self.sync_lateness_seconds.observe(late)

    def observe_3d(self, seconds: float, reprojection_px: float) -> None:
        """One triangulated moment: its time and mean reprojection error (NaN: none measured)."""
        self.triangulation_seconds.observe(seconds)
        if reprojection_px == reprojection_px:  # not NaN
            self.reprojection_error_px.observe(reprojection_px)

    def count_rejected(self, rejected: Iterable[RejectedRep]) -> None:
        """Count candidate reps that did not count (``PersonAnalysis.new_rejected`` of a frame)."""
        for item in rejected:
            exercise = item.exercise if item.exercise in self._exercises else OTHER_STREAMS
            reason = item.reason if item.reason in self._reasons else OTHER_STREAMS
            self.rejected_reps.labels(exercise, reason).inc()

    def stream_label(self, stream_id: str) -> str:
        """The label value for ``stream_id``: itself while labels are left, else ``"other"``."""
        if stream_id in self._labels:
            return stream_id
        if len(self._labels) < self.max_stream_labels:
            self._labels.add(stream_id)
            return stream_id
        return OTHER_STREAMS


def _known_reasons() -> frozenset[str]:
    """Every reason code a shipped exercise can give: the counter's own and the preconditions'."""
    codes = set(REASONS)
    for name in available_exercises():
        codes.update(p.code for p in load_exercise(name).preconditions)
    return frozenset(codes)
