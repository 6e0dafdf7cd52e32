"""FrameGrouper with synthetic capture and arrival times: in step, lag, drops, jitter, a clock
going back, a camera leaving.  Every call names its ``now``: events, no sleeps."""

from __future__ import annotations

import pytest

from pose_analyzer.multiview.sync import ClockWentBackwardsError, FrameGrouper, UnknownCameraError

CAMS = ("a", "b", "c", "d")
PERIOD = 1 / 30


def _feed(grouper: FrameGrouper[int], frames: list[tuple[str, float, float]]) -> list[dict[str, int]]:
    """Feed (camera, capture_ts, arrival) frames in order; the groups as {camera: frame index}."""
    out = []
    for index, (camera, ts, now) in enumerate(frames):
        for group in grouper.add(camera, ts, index, now):
            out.append({name: f.payload for name, f in group.frames.items()})
    return out


def test_cameras_in_step_make_one_full_group_per_moment_as_soon_as_the_last_arrives() -> None:
    grouper: FrameGrouper[int] = FrameGrouper(CAMS)
    emitted = []
    for k in range(5):
        for i, cam in enumerate(CAMS):
            groups = grouper.add(cam, k * PERIOD, k, now=k * PERIOD + i * 0.001)
            # Nothing goes out before the fourth camera's frame; then exactly one group.
            assert len(groups) == (1 if cam == "d" else 0)
            emitted += groups
    assert [g.capture_ts for g in emitted] == pytest.approx([k * PERIOD for k in range(5)])
    for group in emitted:
        assert set(group.frames) == set(CAMS)
        assert not group.missing
        assert not group.timed_out
        assert group.lateness_s["a"] == 0.0
        assert group.lateness_s["d"] == pytest.approx(0.003)
    assert grouper.pending == 0
    assert grouper.period_s == pytest.approx(PERIOD)
    assert grouper.tolerance_s == pytest.approx(PERIOD / 2)
    assert grouper.sync["d"].lateness_max_s == pytest.approx(0.003)


def test_a_lagging_camera_does_not_stall_the_others_and_its_lateness_is_measured() -> None:
    grouper: FrameGrouper[str] = FrameGrouper(("a", "b", "c"), deadline_s=0.2)
    # a and b in time; c's frames arrive 0.15 s late (within the deadline), then c goes silent.
    assert grouper.add("a", 0.0, "a0", now=0.0) == []
    assert grouper.add("b", 0.0, "b0", now=0.01) == []
    assert grouper.next_deadline() == pytest.approx(0.2)
    (group,) = grouper.add("c", 0.0, "c0", now=0.15)
    assert set(group.frames) == {"a", "b", "c"}
    assert group.lateness_s["c"] == pytest.approx(0.15)
    grouper.add("a", PERIOD, "a1", now=0.2)
    grouper.add("b", PERIOD, "b1", now=0.2)
    assert grouper.expire(now=0.39) == []  # c may still come
    (late,) = grouper.expire(now=0.4)  # the deadline: triangulated from a and b
    assert set(late.frames) == {"a", "b"}
    assert late.missing == ("c",)
    assert late.timed_out
    assert late.triangulable
    assert grouper.sync["c"].missed == 1
    assert grouper.sync["c"].grouped == 1


def test_a_camera_that_dropped_a_moment_is_known_absent_without_waiting() -> None:
    grouper: FrameGrouper[int] = FrameGrouper(("a", "b"), deadline_s=10.0)
    assert grouper.add("a", 0.0, 0, now=0.0) == []
    # b's next frame is two periods on: it dropped t=0, so the group goes out at once with a alone.
    (group,) = grouper.add("b", 2 * PERIOD, 1, now=0.001)
    assert set(group.frames) == {"a"}
    assert group.missing == ("b",)
    assert not group.timed_out
    assert not group.triangulable
    assert grouper.pending == 1  # b's frame waits for a's of that moment
    (group,) = grouper.add("a", 2 * PERIOD, 2, now=0.002)
    assert {n: f.payload for n, f in group.frames.items()} == {"a": 2, "b": 1}


def test_jitter_within_half_a_period_keeps_frames_of_one_moment_together() -> None:
    jitter = [0.0, 0.012, -0.009, 0.015]  # < PERIOD / 2 = 0.0167 apart
    grouper: FrameGrouper[int] = FrameGrouper(CAMS, tolerance_s=PERIOD / 2)
    frames = []
    for k in range(1, 20):
        for i, cam in enumerate(CAMS):
            frames.append((cam, k * PERIOD + jitter[(i + k) % 4] / 2, k * PERIOD))
    groups = _feed(grouper, frames)
    assert len(groups) == 19
    assert all(len(g) == 4 for g in groups)
    # every group holds one moment: the four frames fed for one k
    assert all(len({v // 4 for v in g.values()}) == 1 for g in groups)


def test_the_period_and_tolerance_are_estimated_from_the_streams() -> None:
    grouper: FrameGrouper[int] = FrameGrouper(("a", "b"))
    assert grouper.tolerance_s == pytest.approx(1 / 60)  # the default before any interval
    for k in range(10):
        grouper.add("a", k * 0.1, k, now=k * 0.1)
        grouper.add("b", k * 0.1 + 0.02, k, now=k * 0.1)
    assert grouper.period_s == pytest.approx(0.1)
    assert grouper.tolerance_s == pytest.approx(0.05)
    assert grouper.pending == 0  # 20 ms apart: within 50 ms, so every moment was grouped


def test_a_clock_going_back_is_refused_for_that_camera_only() -> None:
    grouper: FrameGrouper[int] = FrameGrouper(("a", "b"))
    grouper.add("a", 1.0, 0, now=0.0)
    with pytest.raises(ClockWentBackwardsError, match=r"'a'.*backwards") as err:
        grouper.add("a", 0.5, 1, now=0.01)
    assert err.value.camera == "a"
    assert grouper.pending == 1  # the refused frame changed nothing
    (group,) = grouper.add("b", 1.0, 2, now=0.02)
    assert set(group.frames) == {"a", "b"}
    with pytest.raises(UnknownCameraError):
        grouper.add("z", 2.0, 3, now=0.03)


def test_a_camera_that_leaves_is_not_waited_for_and_flush_empties_the_rest() -> None:
    grouper: FrameGrouper[int] = FrameGrouper(("a", "b", "c"), deadline_s=100.0)
    grouper.add("a", 0.0, 0, now=0.0)
    grouper.add("b", 0.0, 1, now=0.0)
    (group,) = grouper.leave("c", now=0.0)
    assert set(group.frames) == {"a", "b"}
    assert group.missing == ("c",)
    grouper.add("a", 1.0, 2, now=1.0)  # b still expected: waits
    assert grouper.next_deadline() == pytest.approx(101.0)
    (last,) = grouper.flush()
    assert set(last.frames) == {"a"}
    assert grouper.pending == 0
    assert grouper.next_deadline() is None


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="distinct"):
        FrameGrouper(("a", "a"))
    with pytest.raises(ValueError, match="tolerance_s"):
        FrameGrouper(("a",), tolerance_s=0.0)


def test_only_joined_cameras_are_waited_for() -> None:
    grouper: FrameGrouper[int] = FrameGrouper(CAMS, deadline_s=100.0, active=())
    grouper.add_camera("a")
    grouper.add_camera("b")
    assert grouper.add("a", 0.0, 0, now=0.0) == []
    (group,) = grouper.add("b", 0.0, 1, now=0.0)  # c and d never joined: not waited for
    assert set(group.frames) == {"a", "b"}
    assert group.missing == ("c", "d")
    with pytest.raises(UnknownCameraError):
        grouper.add_camera("z")


def test_a_group_goes_out_once_a_reporting_camera_cannot_send_to_it() -> None:
    grouper: FrameGrouper[str] = FrameGrouper(("a", "b", "c"), deadline_s=10.0)
    # Each stream reports what it receives; b's slot replaces its frame of t=0 by t=1 unanalysed.
    for cam in ("a", "b", "c"):
        assert grouper.received(cam, 0.0, now=0.0) == []
    assert grouper.received("b", PERIOD, now=0.001) == []
    assert grouper.add("a", 0.0, "a0", now=0.02) == []
    assert grouper.add("c", 0.0, "c0", now=0.03) == []
    # b still has t=0 in analysis as far as the grouper knows: the group waits ...
    assert grouper.next_deadline() == pytest.approx(10.02)
    # ... until b says it dropped it: b has moved past t=0 and has nothing of it left.
    (group,) = grouper.dropped("b", 0.0, now=0.031)
    assert set(group.frames) == {"a", "c"}
    assert group.missing == ("b",)
    assert not group.timed_out
    assert group.triangulable
    # b's frame of t=1 is in analysis: the next group waits for it, then is whole.
    assert grouper.received("a", PERIOD, now=0.04) == []
    assert grouper.received("c", PERIOD, now=0.04) == []
    assert grouper.add("a", PERIOD, "a1", now=0.05) == []
    assert grouper.add("c", PERIOD, "c1", now=0.05) == []
    (whole,) = grouper.add("b", PERIOD, "b1", now=0.06)
    assert set(whole.frames) == {"a", "b", "c"}


def test_a_camera_that_received_nothing_later_is_still_waited_for() -> None:
    grouper: FrameGrouper[str] = FrameGrouper(("a", "b"), deadline_s=0.5)
    grouper.received("a", 0.0, now=0.0)
    grouper.received("b", 0.0, now=0.0)
    grouper.add("a", 0.0, "a0", now=0.01)
    # b dropped t=0 but has received nothing later: a frame of this moment may still come.
    assert grouper.dropped("b", 0.0, now=0.02) == []
    assert grouper.received("b", 0.01, now=0.03) == []  # within the window: it may be this moment's
    (group,) = grouper.add("b", 0.01, "b0", now=0.04)
    assert set(group.frames) == {"a", "b"}
    with pytest.raises(UnknownCameraError):
        grouper.received("z", 0.0, now=0.05)
    with pytest.raises(UnknownCameraError):
        grouper.dropped("z", 0.0, now=0.05)
