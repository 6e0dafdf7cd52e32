"""Several people across the cameras of the shared rig: association, triangulation, stable ids.

Known 3D skeletons are projected through the demo rig (``Calib.qca.txt``) into each camera,
each camera's people shuffled, 2 px Gaussian noise added (a keypoint outside a frame is unseen,
as a detector would report it) and one person dropped from one camera.  Bounds:

- association: every group must be exactly the detections of one person, and each person
  seen by two cameras or more one group.  Two people 0.8 m apart cost 11-250 px (Sampson
  distance) on this rig, 95 px in the median; the cheapest pairs are two people near one
  epipolar plane of a camera pair, which the cross check over the other cameras separates.
  The same person costs about sigma (0.8-2 px) against the 20 px threshold;
- triangulation: each keypoint within 6 sqrt(lambda_max(S)) of the truth, S the first-order
  covariance of the cameras that saw it (the bound of test_multiview_triangulation,
  derived in docs/multiview.md), which fails with probability 6e-8 per point;
- ids: people moving at up to 1 m/s, sampled at 30 per second, move 3 cm between moments,
  against a 0.3 m gate, and stay 0.9 m apart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pose_analyzer.multiview import CameraRig, RigError, read_rig
from pose_analyzer.multiview.association import EpipolarAssociator, fundamental_matrix
from pose_analyzer.multiview.people3d import MultiPersonTriangulator, PersonIds, body_centre
from pose_analyzer.multiview.triangulation import MIRRORED
from tests.multiview_synthetic import CAPTURE_CENTRE, STANDING, first_order_covariance, project_all

SIGMA_PX = 2.0
CHI2_3_TAIL = 6.0
RADIUS_M = 0.45  # people on a circle round the capture centre: 0.78 m apart for three


@pytest.fixture(scope="module")
def rig(test_data: Path) -> CameraRig:
    return read_rig(test_data / "multicam" / "Calib.qca.txt")


def _person(angle: float, yaw: float, radius: float = RADIUS_M) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    turn = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    where = CAPTURE_CENTRE + radius * np.array([np.cos(angle), np.sin(angle), 0.0])
    return np.asarray(STANDING @ turn.T + where)


def _formation(rng: np.random.Generator, n: int, phase: float) -> list[np.ndarray]:
    return [_person(phase + 2 * np.pi * k / n, rng.uniform(-np.pi, np.pi)) for k in range(n)]


def _detections(
    rig: CameraRig,
    people: list[np.ndarray],
    rng: np.random.Generator,
    absent: set[tuple[int, int]] = frozenset(),  # type: ignore[assignment]
    sigma: float = SIGMA_PX,
) -> tuple[dict[str, np.ndarray], dict[str, list[int]]]:
    """Each camera's people (N, 21, 3) in a random order, and which true person each row is."""
    views: dict[str, np.ndarray] = {}
    who: dict[str, list[int]] = {}
    projected = [project_all(rig, p) + rng.normal(0.0, sigma, (len(rig), 21, 2)) for p in people]
    for c, cam in enumerate(rig):
        order = [i for i in rng.permutation(len(people)) if (c, i) not in absent]
        rows = []
        for i in order:
            xy = projected[i][c]
            inside = ((xy >= 0) & (xy < np.array(cam.image_size))).all(axis=1)
            rows.append(np.column_stack([np.where(inside[:, None], xy, np.nan), inside * 0.9]))
        views[cam.name] = np.array(rows).reshape(-1, 21, 3)
        who[cam.name] = [int(i) for i in order]
    return views, who


def _truth_of(detections: dict[str, int], who: dict[str, list[int]]) -> set[int]:
    return {who[cam][det] for cam, det in detections.items()}


def test_noiseless_people_lie_on_each_others_epipolar_lines(rig: CameraRig) -> None:
    rng = np.random.default_rng(0)
    people = _formation(rng, 3, 0.3)
    views, who = _detections(rig, people, rng, sigma=0.0)
    associator = EpipolarAssociator(rig)
    apart: dict[tuple[int, int], list[float]] = {}
    for (a, b), cost in associator.costs(views).items():
        same = np.array(who[a])[:, None] == np.array(who[b])[None, :]
        assert cost[same].max() < 1e-6  # the epipolar constraint holds exactly
        for i, j in zip(*np.nonzero(~same), strict=True):
            apart.setdefault((who[a][i], who[b][j]), []).append(float(cost[i, j]))
    # Two people can lie near one epipolar plane of a camera pair (a cost under the threshold),
    # never of every pair: some camera pair tells them apart by far more than the cross check's
    # 2 x threshold, so they are never grouped.
    assert all(max(v) > 2 * associator.threshold_px for v in apart.values())
    assert np.median([c for v in apart.values() for c in v]) > 4 * associator.threshold_px
    # F of (a, b) is F of (b, a) transposed, up to sign (both are normalised).
    f_ab = fundamental_matrix(rig.cameras[0], rig.cameras[1])
    f_ba = fundamental_matrix(rig.cameras[1], rig.cameras[0])
    assert min(np.abs(f_ab - f_ba.T).max(), np.abs(f_ab + f_ba.T).max()) < 1e-9


@pytest.mark.parametrize("seed", range(12))
def test_shuffled_noisy_people_are_grouped_right(rig: CameraRig, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 2 + seed % 2
    people = _formation(rng, n, rng.uniform(0, 2 * np.pi))
    dropped = (int(rng.integers(len(rig))), int(rng.integers(n)))
    views, who = _detections(rig, people, rng, absent={dropped})
    matches = EpipolarAssociator(rig).associate(views)
    assert len(matches) == n
    for match in matches:
        (person,) = _truth_of(match.detections, who)  # one true person per group
        expected = {cam.name for c, cam in enumerate(rig) if (c, person) != dropped}
        assert set(match.cameras) == expected
    assert len(matches[-1].cameras) == len(rig) - 1 if n > 1 else True  # more cameras first


def test_a_camera_that_swapped_sides_still_joins_its_person(rig: CameraRig) -> None:
    rng = np.random.default_rng(5)
    people = _formation(rng, 3, 1.0)
    views, who = _detections(rig, people, rng)
    views["cam02"] = views["cam02"][:, MIRRORED]  # seen from behind: left and right exchanged
    matches = EpipolarAssociator(rig).associate(views)
    assert sorted(len(m.cameras) for m in matches) == [4, 4, 4]
    assert all(len(_truth_of(m.detections, who)) == 1 for m in matches)


def test_triangulated_people_are_within_the_derived_bound(rig: CameraRig) -> None:
    rng = np.random.default_rng(7)
    worst = 0.0
    for trial in range(6):
        people = _formation(rng, 3, trial)
        views, who = _detections(rig, people, rng, absent={(trial % 4, trial % 3)})
        found = MultiPersonTriangulator(rig)(views, 0.0)
        assert len(found) == 3
        for person in found:
            (truth,) = _truth_of(person.match.detections, who)
            cameras = [rig.names.index(c) for c in person.cameras]
            result = person.triangulation
            assert result.used.all()  # 2 px noise: no camera is an outlier
            for k in range(21):
                s = first_order_covariance(rig, people[truth][k], SIGMA_PX, cameras)
                error = float(np.linalg.norm(result.points[k] - people[truth][k]))
                bound = CHI2_3_TAIL * np.sqrt(np.linalg.eigvalsh(s)[-1])
                assert error <= bound, (trial, truth, k, error, bound)
                worst = max(worst, error / bound)
    assert worst > 0.01  # the noise was there


def test_a_person_split_between_camera_pairs_is_joined_again(rig: CameraRig) -> None:
    # cam03 and cam04 see person 0 15 cm higher than cam01 and cam02 do (a detector's systematic
    # error): the two pairs disagree by more than the threshold, so the association makes two
    # groups of two cameras, which triangulate 15 cm apart: one person, joined again.
    people = [_person(0.0, 0.3), _person(np.pi, -1.0)]
    high = people[0] + np.array([0.0, 0.0, 0.15])
    views = {}
    for c, cam in enumerate(rig):
        first = project_all(rig, people[0] if c < 2 else high)[c]
        rows = [first, project_all(rig, people[1])[c]]
        views[cam.name] = np.array([np.column_stack([r, np.ones(21)]) for r in rows])
    groups = EpipolarAssociator(rig).associate(views)
    assert sorted(m.cameras for m in groups if set(m.detections.values()) == {0}) == [
        ("cam01", "cam02"),
        ("cam03", "cam04"),
    ]
    found = MultiPersonTriangulator(rig)(views, 0.0)
    assert [p.cameras for p in found] == [rig.names, rig.names]
    joined = next(p for p in found if set(p.match.detections.values()) == {0})
    assert np.linalg.norm(body_centre(joined.points) - body_centre(people[0])) < 0.15


def test_ids_stay_with_their_people_over_a_sequence(rig: CameraRig) -> None:
    rng = np.random.default_rng(11)
    yaws = rng.uniform(-np.pi, np.pi, 3)
    ids: dict[int, set[int]] = {0: set(), 1: set(), 2: set()}
    triangulate = MultiPersonTriangulator(rig)
    for frame in range(45):
        t = frame / 30
        # The formation turns at 2 rad/s (0.9 m/s on the circle) while each person turns too.
        people = [_person(2.0 * t + 2 * np.pi * k / 3, yaws[k] + t) for k in range(3)]
        absent = set()
        if frame < 10:
            absent |= {(c, 2) for c in range(4)}  # person 2 walks in at frame 10
        if 20 <= frame < 26:
            absent |= {(c, 0) for c in range(1, 4)}  # person 0 only seen by cam01 for 0.2 s
        views, who = _detections(rig, people, rng, absent=absent)
        found = triangulate(views, t)
        present = {who_ for p in found for who_ in _truth_of(p.match.detections, who)}
        assert present == {0, 1, 2} - ({2} if frame < 10 else set()) - ({0} if 20 <= frame < 26 else set())
        for person in found:
            (truth,) = _truth_of(person.match.detections, who)
            ids[truth].add(person.id)
    assert all(len(v) == 1 for v in ids.values()), ids
    assert ids[0] | ids[1] | ids[2] == {0, 1, 2}  # one id each, distinct
    assert ids[2] == {2}  # the late comer got a new id


def test_an_id_is_not_given_to_someone_far_away() -> None:
    ids = PersonIds(keep_s=1.0)
    assert ids.assign([[0.0, 0.0, 1.0], [1.0, 0.0, 1.0]], 0.0) == [0, 1]
    # 0.1 s later: one moved 5 cm, the other vanished and someone appears 2 m away.
    assert ids.assign([[2.0, 2.0, 1.0], [0.05, 0.0, 1.0]], 0.1) == [2, 0]
    assert ids.known() == {0, 1, 2}
    assert ids.assign([[0.1, 0.0, 1.0]], 1.5) == [3]  # 1.4 s unseen: forgotten (keep_s)
    assert ids.assign([[np.nan, np.nan, np.nan]], 1.6) == [4]


def test_body_centre_is_the_mid_hip_else_the_mean() -> None:
    points = STANDING.copy()
    assert np.allclose(body_centre(points), [0.0, 0.0, 0.95])
    points[11] = np.nan
    assert np.allclose(body_centre(points), np.nanmean(points, axis=0))
    assert np.isnan(body_centre(np.full((21, 3), np.nan))).all()


def test_bad_input_is_refused(rig: CameraRig) -> None:
    associator = EpipolarAssociator(rig)
    with pytest.raises(RigError, match="no camera 'cam09'"):
        associator.associate({"cam09": np.zeros((1, 21, 3))})
    with pytest.raises(ValueError, match=r"\(N, K, 3\)"):
        associator.associate({"cam01": np.zeros((21, 3))})
    with pytest.raises(ValueError, match="threshold_px"):
        EpipolarAssociator(rig, threshold_px=0.0)
    assert associator.associate({"cam01": np.zeros((0, 21, 3)), "cam02": np.zeros((0, 21, 3))}) == []
