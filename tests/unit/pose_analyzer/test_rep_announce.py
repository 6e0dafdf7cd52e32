"""``streaming.announce.RepLedger``: answers never show a rep before its announcement, and each
rep is announced once, with the counts it brings."""

from __future__ import annotations

import numpy as np

from pose_analyzer.output import people_out
from pose_analyzer.streaming.announce import RepLedger
from pose_analyzer.types import FrameAnalysis, Person, PersonAnalysis, RepRecord

NUM_KEYPOINTS = 33


def person(
    track_id: int,
    rep_count: int,
    new_rep: RepRecord | None = None,
    count_by_side: dict[str, int] | None = None,
) -> PersonAnalysis:
    body = Person(np.zeros((NUM_KEYPOINTS, 3), np.float32), (0.0, 0.0, 10.0, 10.0), 0.9, track_id)
    return PersonAnalysis(body, {}, rep_count=rep_count, new_rep=new_rep, count_by_side=count_by_side)


def rep(index: int, side: str = "") -> RepRecord:
    return RepRecord("squat", index, float(index), index + 1.0, 90.0, 1.0, 80.0, side=side)


def frame(*people: PersonAnalysis) -> FrameAnalysis:
    return FrameAnalysis(0, 0.0, 64, 64, list(people))


def test_a_rep_frame_is_answered_without_its_rep_until_it_is_released() -> None:
    ledger = RepLedger("s", rep_offset=2)
    assert ledger.count(2) == 2
    first = frame(person(1, 1, rep(1)))
    held = ledger.hold(7, 0.0, first, rep_count=3, committed=None)
    # The rep's own frame and the frames after it, until the announcement, leave the rep out.
    for analysis in (first, frame(person(1, 1))):
        assert ledger.count(3) == 2
        (shown,) = ledger.mask(people_out(analysis.people))
        assert (shown.rep, shown.rep_count) == (None, 0)
    (message,) = ledger.release(held)
    assert (message.frame_id, message.track_id, message.rep.index) == (7, 1, 1)
    assert (message.rep_count, message.person_rep_count, message.commit_ms) == (3, 1, None)
    assert message.latency_ms > 0
    assert ledger.count(3) == 3
    (shown,) = ledger.mask(people_out([person(1, 1)]))
    assert shown.rep_count == 1


def test_reps_of_several_frames_are_counted_in_as_each_is_released() -> None:
    ledger = RepLedger("s", rep_offset=0)
    a = ledger.hold(1, 0.0, frame(person(1, 1, rep(1)), person(2, 0)), rep_count=1, committed=None)
    b = ledger.hold(2, 0.0, frame(person(1, 2, rep(2)), person(2, 1, rep(1))), rep_count=2, committed=None)
    now = people_out([person(1, 2), person(2, 1)])
    assert [p.rep_count for p in ledger.mask(now)] == [0, 0]
    assert ledger.count(2) == 0
    assert len(ledger.release(a)) == 1
    assert [p.rep_count for p in ledger.mask(now)] == [1, 0]
    assert ledger.count(2) == 1
    assert [(m.track_id, m.person_rep_count) for m in ledger.release(b)] == [(1, 2), (2, 1)]
    assert [p.rep_count for p in ledger.mask(now)] == [2, 1]
    assert ledger.count(2) == 2


def test_count_by_side_leaves_out_the_held_reps_of_their_side() -> None:
    ledger = RepLedger("s", rep_offset=0)
    punch = person(1, 3, rep(3, "left"), count_by_side={"left": 2, "right": 1})
    held = ledger.hold(1, 0.0, frame(punch), rep_count=3, committed=None)
    (shown,) = ledger.mask(people_out([punch]))
    assert shown.count_by_side == {"left": 1, "right": 1}
    ledger.release(held)
    (shown,) = ledger.mask(people_out([punch]))
    assert shown.count_by_side == {"left": 2, "right": 1}
