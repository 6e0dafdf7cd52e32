"""Coordinated dropping: each camera's ``MomentSlot`` asks the session's ``FrameGrouper.choose``
which waiting frame to analyse, so cameras that cannot keep up drop the same moments.  Frames
arrive, are taken and are added in an explicit order with explicit ``now``: events, no sleeps."""

from __future__ import annotations

import asyncio

import pytest

from pose_analyzer.multiview.sync import ClockWentBackwardsError, FrameGroup, FrameGrouper
from pose_analyzer.streaming.slot import LatestSlot, MomentSlot, SlotClosedError

CAMS = ("a", "b", "c", "d")
PERIOD = 1 / 30


class Rig:
    """A grouper and one slot per camera wired as a 3D session's streams wire them."""

    def __init__(self, cameras: tuple[str, ...] = CAMS, deadline_s: float = 0.25) -> None:
        self.grouper: FrameGrouper[int] = FrameGrouper(cameras, PERIOD / 2, deadline_s, active=())
        self.now = 0.0
        self.groups: list[FrameGroup[int]] = []
        self.dropped: dict[str, list[float]] = {cam: [] for cam in cameras}
        self.slots = {cam: self._slot(cam) for cam in cameras}
        for cam in cameras:
            self.grouper.add_camera(cam)

    def _slot(self, cam: str) -> MomentSlot[float]:
        def drop(ts: float) -> None:
            self.dropped[cam].append(ts)
            self.groups += self.grouper.dropped(cam, ts, self.now)

        return MomentSlot(lambda ts: ts, lambda waiting: self.grouper.choose(cam, waiting), drop)

    def receive(self, cam: str, ts: float) -> None:
        self.groups += self.grouper.received(cam, ts, self.now)
        self.slots[cam].put(ts)

    def take(self, cam: str) -> float:
        return self.slots[cam].take_nowait()[0]

    def add(self, cam: str, ts: float) -> None:
        self.groups += self.grouper.add(cam, ts, 0, self.now)


def test_four_cameras_with_staggered_arrivals_analyse_the_same_moment() -> None:
    rig = Rig()
    for k in range(2):
        for cam in CAMS:
            rig.receive(cam, k * PERIOD)
    # a is ready first: the newest moment every camera holds is frame 1 (frame 0 is dropped).
    assert rig.take("a") == PERIOD
    # b's frame 2 arrives before b is ready: latest-frame-wins would take it, b joins a's moment.
    rig.receive("b", 2 * PERIOD)
    taken = {"a": PERIOD, **{cam: rig.take(cam) for cam in ("b", "c", "d")}}
    assert taken == dict.fromkeys(CAMS, PERIOD)
    assert rig.dropped == {cam: [0.0] for cam in CAMS}
    assert rig.slots["b"].waiting == 1  # frame 2 waits for b's next turn
    for cam in CAMS:
        rig.add(cam, PERIOD)
    assert len(rig.groups) == 1
    group = rig.groups[0]
    assert set(group.frames) == set(CAMS)
    assert not group.missing
    assert not group.timed_out
    # The next moment: the cameras that later receive frame 2 take it too.
    for cam in ("a", "c", "d"):
        rig.receive(cam, 2 * PERIOD)
    assert {cam: rig.take(cam) for cam in CAMS} == dict.fromkeys(CAMS, 2 * PERIOD)


def test_a_camera_behind_on_a_chosen_moment_still_joins_it_rather_than_skipping_ahead() -> None:
    rig = Rig(("a", "b"))
    rig.receive("a", 0.0)
    rig.receive("b", 0.0)
    assert rig.take("a") == 0.0
    rig.add("a", 0.0)
    rig.receive("a", PERIOD)
    assert rig.take("a") == PERIOD  # a moves on while b still waits for its turn
    rig.receive("b", PERIOD)
    assert rig.take("b") == 0.0  # the oldest moment chosen whose group is open
    rig.add("b", 0.0)
    assert [set(g.frames) for g in rig.groups] == [{"a", "b"}]
    assert rig.take("b") == PERIOD


def test_a_camera_that_stops_does_not_stall_the_others_and_the_deadline_still_closes_groups() -> None:
    rig = Rig(("a", "b", "c"), deadline_s=0.25)
    rig.receive("c", 0.0)
    assert rig.take("c") == 0.0
    rig.add("c", 0.0)  # c's first frame, then silence
    for k in (1, 2):
        rig.receive("a", k * PERIOD)
        rig.receive("b", k * PERIOD)
    # c holds nothing: no moment is common to all; a takes its newest, b joins it.
    assert rig.take("a") == 2 * PERIOD
    assert rig.take("b") == 2 * PERIOD
    rig.add("a", 2 * PERIOD)
    rig.add("b", 2 * PERIOD)
    assert [set(g.frames) for g in rig.groups] == [{"c"}]  # a and b moved past it
    deadline = rig.grouper.next_deadline()
    assert deadline is not None
    rig.now = deadline
    late = rig.grouper.expire(rig.now)
    assert [set(g.frames) for g in late] == [{"a", "b"}]
    assert late[0].missing == ("c",)
    assert late[0].timed_out


def test_a_clock_going_back_reaches_its_camera_and_no_other() -> None:
    rig = Rig(("a", "b"))
    for cam in ("a", "b"):
        rig.receive(cam, PERIOD)
        assert rig.take(cam) == PERIOD
        rig.add(cam, PERIOD)
    rig.receive("b", 2 * PERIOD)
    rig.receive("b", 0.5 * PERIOD)  # b's clock goes back: the later frame waiting is dropped
    assert rig.dropped["b"] == [2 * PERIOD]
    back = rig.take("b")
    assert back == 0.5 * PERIOD  # taken, not hidden behind a later one
    with pytest.raises(ClockWentBackwardsError, match="'b'"):
        rig.add("b", back)
    rig.groups += rig.grouper.leave("b", rig.now)  # its stream ends; a goes on alone
    rig.receive("a", 2 * PERIOD)
    assert rig.take("a") == 2 * PERIOD
    rig.add("a", 2 * PERIOD)
    assert [set(g.frames) for g in rig.groups] == [{"a", "b"}, {"a"}]


def test_a_moment_slot_keeps_a_bounded_queue_and_reports_every_drop() -> None:
    dropped: list[int] = []
    second = lambda waiting: min(1, len(waiting) - 1)  # noqa: E731
    slot: MomentSlot[int] = MomentSlot(float, second, dropped.append, limit=3)
    assert [slot.put(1), slot.put(2), slot.put(3)] == [False, False, False]
    assert slot.put(4)  # the oldest goes
    assert dropped == [1]
    assert slot.take_nowait() == (3, 2)  # 2 dropped for the chosen one, plus 1 on the put
    assert dropped == [1, 2]
    assert slot.waiting == 1
    assert slot.take_nowait() == (4, 0)
    with pytest.raises(ValueError, match="limit"):
        MomentSlot(float, lambda waiting: 0, limit=0)


def test_a_moment_slot_refuses_a_choice_out_of_range() -> None:
    slot: MomentSlot[int] = MomentSlot(float, lambda waiting: len(waiting))
    slot.put(1)
    with pytest.raises(IndexError):
        slot.take_nowait()


async def test_a_closed_moment_slot_hands_out_what_waits_then_raises() -> None:
    slot: MomentSlot[int] = MomentSlot(float, lambda waiting: 0)
    taking = asyncio.ensure_future(slot.take())
    await asyncio.sleep(0)  # let the take start waiting
    assert not taking.done()
    slot.put(7)
    assert await asyncio.wait_for(taking, 5) == (7, 0)
    slot.put(8)
    slot.put(9)
    slot.close()
    with pytest.raises(SlotClosedError):
        slot.put(10)
    assert await slot.take() == (8, 0)
    assert await slot.take() == (9, 0)
    with pytest.raises(SlotClosedError):
        await slot.take()


def test_a_latest_slot_reports_the_item_it_replaces() -> None:
    dropped: list[int] = []
    slot: LatestSlot[int] = LatestSlot(dropped.append)
    slot.put(1)
    slot.put(2)
    assert dropped == [1]
    assert slot.take_nowait() == (2, 1)
