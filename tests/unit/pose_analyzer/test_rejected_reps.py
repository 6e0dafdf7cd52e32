"""Rejected candidate reps and per-side counts, from the counter to what people see: the output
model, the overlay and the Prometheus counter."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry

from pose_analyzer.engine import PoseEngine
from pose_analyzer.keypoints import empty_keypoints
from pose_analyzer.metrics import OTHER_STREAMS, StreamMetrics
from pose_analyzer.output import PersonOut
from pose_analyzer.render import REJECTED_COLOR, REJECTED_SHOWN_S, draw_analysis
from pose_analyzer.types import Detections, Frame, FrameAnalysis, Person, PersonAnalysis, RejectedRep
from tests.unit.pose_analyzer.test_engine import FPS, knee_series, squatter

H, W = 480, 640
DARK = np.zeros((H, W, 3), dtype=np.uint8)
BRIGHT = np.full((H, W, 3), (40, 200, 230), dtype=np.uint8)
CUT = RejectedRep("squat", 2.0, 3.0, "cut", "a scene cut or camera switch happened inside the rep", "mean")


def _person_analysis(**fields: object) -> PersonAnalysis:
    person = Person(keypoints=empty_keypoints(), box=(500.0, 300.0, 600.0, 460.0), score=0.9, track_id=1)
    return PersonAnalysis(person=person, angles={}, **fields)  # type: ignore[arg-type]


def _frame(t: float, person: PersonAnalysis) -> FrameAnalysis:
    return FrameAnalysis(index=0, timestamp=t, width=W, height=H, people=[person])


def test_the_output_carries_the_latest_rejection_and_per_side_counts() -> None:
    out = PersonOut.of(_person_analysis(last_rejected=CUT, count_by_side={"left": 3, "right": 2}))
    assert out.rejected is not None
    assert out.rejected.model_dump() == {
        "exercise": "squat",
        "start_s": 2.0,
        "end_s": 3.0,
        "reason": "cut",
        "message": CUT.message,
        "side": "mean",
    }
    assert out.count_by_side == {"left": 3, "right": 2}
    plain = PersonOut.of(_person_analysis())
    assert plain.rejected is None
    assert plain.count_by_side is None


def test_the_engine_fills_the_output_of_a_real_rejection() -> None:
    series = knee_series(2)
    engine = PoseEngine(exercise="squat")
    cut = 45  # rep 1 (frames 0-60) after its peak at frame 30
    outs = []
    for i, angle in enumerate(series):
        image = DARK if i < cut else BRIGHT
        analysis = engine.analyse(Frame(image, i / FPS, i), Detections(people=[squatter(angle)]))
        outs.append(PersonOut.of(analysis.people[0]))
    assert all(o.rejected is None for o in outs[:cut])
    assert all(o.rejected is not None and o.rejected.reason == "cut" for o in outs[cut:])
    # A squat is counted on one driver (``side: mean``): no per-side counts.
    assert outs[-1].count_by_side is None


def _rejected_pixels(image: np.ndarray) -> int:
    """Pixels of the rejection's colour (BGR orange-red), allowing for anti-aliasing; no other
    colour of the panel (white text, grey panel, track 1's blue) has a strong red and little blue."""
    b, _, r = REJECTED_COLOR
    assert (b, r) == (0, 255)
    return int(((image[..., 2] > 180) & (image[..., 0] < 60) & (image[..., 1] < 150)).sum())


def test_the_overlay_says_why_a_rep_did_not_count_for_a_few_seconds() -> None:
    person = _person_analysis(last_rejected=CUT, rep_count=1)
    just_after = draw_analysis(DARK, _frame(CUT.end_time + 0.5, person))
    long_after = draw_analysis(DARK, _frame(CUT.end_time + REJECTED_SHOWN_S + 0.5, person))
    without = draw_analysis(DARK, _frame(CUT.end_time + 0.5, _person_analysis(rep_count=1)))
    assert _rejected_pixels(just_after) > 50
    assert _rejected_pixels(long_after) == 0
    assert _rejected_pixels(without) == 0


def test_the_overlay_shows_per_side_counts() -> None:
    panel = (slice(0, 80), slice(0, 320))
    both = draw_analysis(
        DARK, _frame(0.0, _person_analysis(rep_count=5, count_by_side={"left": 3, "right": 2}))
    )
    plain = draw_analysis(DARK, _frame(0.0, _person_analysis(rep_count=5)))
    assert not np.array_equal(both[panel], plain[panel])


def test_rejected_reps_are_counted_by_exercise_and_bounded_reason() -> None:
    registry = CollectorRegistry()
    metrics = StreamMetrics(registry)
    posture = RejectedRep("push_up", 0.0, 1.0, "not_in_plank", "...", "left")
    forged = RejectedRep("my_own_exercise", 0.0, 1.0, "x" * 200, "...", "")
    metrics.count_rejected([CUT, CUT, posture, forged])

    def value(exercise: str, reason: str) -> float | None:
        labels = {"exercise": exercise, "reason": reason}
        return registry.get_sample_value("pose_stream_rejected_reps_total", labels)

    assert value("squat", "cut") == 2.0
    assert value("push_up", "not_in_plank") == 1.0
    assert value(OTHER_STREAMS, OTHER_STREAMS) == 1.0
