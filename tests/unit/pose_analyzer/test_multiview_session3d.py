"""Live3DSession with synthetic people projected through the shared rig: the streams of one
moment get one triangulated moment, a silent camera does not stall the others, a clock going
back is refused for its camera only, every moment is stored, and a multi-person session gives
each person one id."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from pose_analyzer.multiview import CameraRig, read_rig
from pose_analyzer.multiview.moment3d import view_of
from pose_analyzer.multiview.session3d import (
    STORE_BATCH,
    CameraTakenError,
    Live3DSession,
    Live3DSessions,
)
from pose_analyzer.multiview.sync import ClockWentBackwardsError
from pose_analyzer.output import Pose3DOut
from pose_analyzer.storage import StorageError
from pose_analyzer.storage.rigs import Point3DFrame
from pose_analyzer.types import FrameAnalysis, Person, PersonAnalysis
from tests.multiview_synthetic import project_all, random_people

HALF = 2  # frames are sent at half the calibrated size: the session scales keypoints back


@pytest.fixture(scope="module")
def rig(test_data: Path) -> CameraRig:
    return read_rig(test_data / "multicam/Calib.qca.txt")


def _analysis(pixels: np.ndarray, size: tuple[int, int], *more: np.ndarray) -> FrameAnalysis:
    people = []
    for track, person_pixels in enumerate((pixels, *more)):
        keypoints = np.column_stack([person_pixels / HALF, np.ones(len(person_pixels))]).astype(np.float32)
        people.append(PersonAnalysis(Person(keypoints, (0.0, 0.0, 1.0, 1.0), 0.9, track + 1), {}))
    return FrameAnalysis(0, 0.0, size[0] // HALF, size[1] // HALF, people)


def _session(rig: CameraRig, rows: list[Point3DFrame], deadline_s: float = 10.0) -> Live3DSession:
    live = Live3DSession("s1", "demo", rig, deadline_s=deadline_s, store=rows.extend)
    for cam in rig.names:
        live.join(cam, f"stream-{cam}")
    return live


async def test_the_streams_of_one_moment_share_its_triangulated_points(rig: CameraRig) -> None:
    rows: list[Point3DFrame] = []
    live = _session(rig, rows)
    # One person standing still: the session smooths the trajectory, which then stays on it.
    people = np.repeat(random_people(np.random.default_rng(12), 1), 3, axis=0)
    for k, truth in enumerate(people):
        pixels = project_all(rig, truth)
        views = [view_of(_analysis(pixels[c], cam.image_size), cam.image_size) for c, cam in enumerate(rig)]
        moments = await asyncio.gather(
            *(live.submit(cam, k / 30, view) for cam, view in zip(rig.names, views, strict=True))
        )
        assert all(m is moments[0] for m in moments)
        moment = moments[0]
        assert moment is not None
        assert moment.cameras == rig.names
        assert moment.missing == ()
        assert moment.points is not None
        # float32 keypoints of half-size frames: far below a millimetre.
        assert np.abs(moment.points - truth).max() < 1e-3
        assert moment.mean_reprojection_px < 0.05
        assert moment.angles["left_knee"] > 150  # standing
    assert [r.seq for r in rows] == []  # batched: stored when the batch fills or streams leave
    for cam in rig.names:
        await live.leave(cam, f"stream-{cam}")
    assert [r.seq for r in rows] == [0, 1, 2]
    assert rows[0].data["cameras"] == list(rig.names)
    assert np.allclose(np.array(rows[0].data["keypoints"]), people[0], atol=1e-3)


async def test_a_silent_camera_does_not_stall_the_others(rig: CameraRig) -> None:
    rows: list[Point3DFrame] = []
    live = _session(rig, rows, deadline_s=0.05)  # the deadline timer: one event, 50 ms
    truth = random_people(np.random.default_rng(3), 1)[0]
    pixels = project_all(rig, truth)
    talking = rig.names[:3]
    views = {
        cam: view_of(_analysis(pixels[c], rig.camera(cam).image_size), rig.camera(cam).image_size)
        for c, cam in enumerate(talking)
    }
    moments = await asyncio.gather(*(live.submit(cam, 0.0, views[cam]) for cam in talking))
    moment = moments[0]
    assert moment is not None
    assert moment.cameras == talking
    assert moment.missing == (rig.names[3],)
    assert np.abs(moment.points - truth).max() < 1e-3
    assert live.sync.sync[rig.names[3]].missed == 1


async def test_a_camera_that_dropped_the_moment_unanalysed_is_not_waited_for(rig: CameraRig) -> None:
    live = _session(rig, [], deadline_s=3600.0)  # no timer can decide it here
    truth = random_people(np.random.default_rng(4), 1)[0]
    pixels = project_all(rig, truth)
    views = {
        cam: view_of(_analysis(pixels[c], rig.camera(cam).image_size), rig.camera(cam).image_size)
        for c, cam in enumerate(rig.names)
    }
    for cam in rig.names:
        live.received(cam, 0.0)
    present, dropping = rig.names[:3], rig.names[3]
    waiting = [asyncio.ensure_future(live.submit(cam, 0.0, views[cam])) for cam in present]
    await asyncio.sleep(0)
    assert not any(f.done() for f in waiting)  # the fourth camera's frame may still come
    live.received(dropping, 1 / 30)  # its slot replaced that frame by a newer one
    live.dropped(dropping, 0.0)
    moments = await asyncio.gather(*waiting)
    assert all(m is moments[0] for m in moments)
    assert moments[0] is not None
    assert moments[0].cameras == present
    assert moments[0].missing == (dropping,)
    # The dropping camera's next frame waits for its own moment with the others.
    later = asyncio.ensure_future(live.submit(dropping, 1 / 30, views[dropping]))
    await asyncio.sleep(0)
    assert not later.done()
    for cam in rig.names:
        await live.leave(cam, f"stream-{cam}")
    assert await later is None  # alone in its group: nothing to triangulate


async def test_a_clock_going_back_is_refused_for_its_camera_only(rig: CameraRig) -> None:
    live = _session(rig, [])
    for cam in rig.names[1:]:
        await live.leave(cam, f"stream-{cam}")
    nobody = view_of(FrameAnalysis(0, 0.0, 540, 960, []), (1080, 1920))
    assert await live.submit(rig.names[0], 1.0, nobody) is None  # one camera: no 3D
    with pytest.raises(ClockWentBackwardsError):
        await live.submit(rig.names[0], 0.5, nobody)


async def test_a_camera_is_one_stream_and_a_session_one_rig(rig: CameraRig) -> None:
    sessions = Live3DSessions()
    live = sessions.open(Live3DSession("s1", "demo", rig))
    live.join("cam01", "a")
    with pytest.raises(CameraTakenError):
        live.join("cam01", "b")
    with pytest.raises(ValueError, match="no camera"):
        live.join("cam09", "c")
    with pytest.raises(ValueError, match="uses rig 'demo'"):
        sessions.open(Live3DSession("s1", "other", rig))
    await sessions.leave("s1", "cam01", "a")
    assert len(sessions) == 0


async def test_a_failed_store_reaches_every_stream_of_the_group(rig: CameraRig) -> None:
    def refuse(rows: list[Point3DFrame]) -> None:
        raise StorageError("the database refused the rows")

    live = Live3DSession("s1", "demo", rig, store=refuse)
    two = rig.names[:2]
    for cam in two:
        live.join(cam, f"stream-{cam}")
    truth = random_people(np.random.default_rng(5), 1)[0]
    pixels = project_all(rig, truth)
    views = {
        cam: view_of(_analysis(pixels[c], rig.camera(cam).image_size), rig.camera(cam).image_size)
        for c, cam in enumerate(two)
    }
    for k in range(STORE_BATCH - 1):  # batched: nothing stored yet
        await asyncio.gather(*(live.submit(cam, k / 30, views[cam]) for cam in two))
    results = await asyncio.gather(
        *(live.submit(cam, STORE_BATCH / 30, views[cam]) for cam in two), return_exceptions=True
    )
    assert all(isinstance(r, StorageError) for r in results), results


def test_a_cropped_camera_keeps_its_pixels_square_and_a_scaled_copy_is_scaled_per_axis() -> None:
    keypoints = np.array([[400.0, 800.0, 0.9]] * 21, dtype=np.float32)
    person = Person(keypoints, (0.0, 0.0, 1.0, 1.0), 0.9, 1)

    def scaled(width: int, height: int) -> np.ndarray:
        view = view_of(FrameAnalysis(0, 0.0, width, height, [PersonAnalysis(person, {})]), (1088, 1920))
        assert view.keypoints is not None
        return view.keypoints[0, :2]

    # 1080 x 1920 video of a 1088 x 1920 calibration, sent 480 px wide: one scale, that of the height.
    assert scaled(480, 853) == pytest.approx([400 * 1920 / 853, 800 * 1920 / 853])
    # The same camera's full 1088 px width, sent 480 px wide (rounded to 847 rows): per axis.
    assert scaled(480, 847) == pytest.approx([400 * 1088 / 480, 800 * 1920 / 847])


async def test_a_multi_person_session_gives_each_person_one_id(rig: CameraRig) -> None:
    rows: list[Point3DFrame] = []
    live = Live3DSession("s1", "demo", rig, deadline_s=10.0, store=rows.extend, multi_person=True)
    for cam in rig.names:
        live.join(cam, f"stream-{cam}")
    shift = np.array([0.45, 0.0, 0.0])  # two people 0.9 m apart, still in every frame
    a, b = (
        p + d for p, d in zip(random_people(np.random.default_rng(4), 2, 0.0), (shift, -shift), strict=True)
    )
    ids: dict[str, set[int]] = {"a": set(), "b": set()}
    for k in range(4):
        pa, pb = project_all(rig, a), project_all(rig, b)  # standing: the smoothing stays on them
        views = []
        for c, cam in enumerate(rig):
            # Each camera lists the two people in its own order, as its tracker numbered them.
            first, second = (pa[c], pb[c]) if (c + k) % 2 else (pb[c], pa[c])
            views.append(view_of(_analysis(first, cam.image_size, second), cam.image_size, every_person=True))
        moments = await asyncio.gather(
            *(live.submit(cam, k / 30, view) for cam, view in zip(rig.names, views, strict=True))
        )
        moment = moments[0]
        assert moment is not None
        assert len(moment.people) == 2
        for person in moment.people:
            off_a, off_b = (np.abs(person.points - p).max() for p in (a, b))
            assert min(off_a, off_b) < 1e-3  # float32 keypoints of half-size frames
            ids["a" if off_a < off_b else "b"].add(person.id)
            assert person.cameras == rig.names
        # The top-level fields are the first person's (the lowest id).
        assert moment.person_id == moment.people[0].id == min(p.id for p in moment.people)
        assert np.array_equal(moment.points, moment.people[0].points)
        out = Pose3DOut.of(moment)
        assert [p.id for p in out.people] == [p.id for p in moment.people]
        assert out.person_id == moment.person_id
    assert len(ids["a"]) == len(ids["b"]) == 1
    assert ids["a"] != ids["b"]
    for cam in rig.names:
        await live.leave(cam, f"stream-{cam}")
    assert [r.data["person_id"] for r in rows] == [0, 0, 0, 0]
    other = rows[-1].data["others"]
    assert [o["id"] for o in other] == [1]
    second = b if ids["a"] == {0} else a
    assert np.abs(np.array(other[0]["keypoints"]) - second).max() < 1e-3


async def test_a_single_person_session_reports_one_person_with_id_0(rig: CameraRig) -> None:
    live = _session(rig, [])
    truth = random_people(np.random.default_rng(8), 1)[0]
    pixels = project_all(rig, truth)
    other = project_all(rig, truth + np.array([0.5, 0.0, 0.0]))
    views = [
        view_of(_analysis(pixels[c], cam.image_size, other[c]), cam.image_size) for c, cam in enumerate(rig)
    ]
    assert all(v.others == () for v in views)  # the first person only
    moments = await asyncio.gather(
        *(live.submit(cam, 0.0, v) for cam, v in zip(rig.names, views, strict=True))
    )
    moment = moments[0]
    assert moment is not None
    assert [p.id for p in moment.people] == [0]
    assert np.abs(moment.points - truth).max() < 1e-3
