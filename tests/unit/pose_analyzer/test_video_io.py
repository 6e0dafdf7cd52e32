"""Finding and decoding media: real clips and images, truncated and fake files."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from pose_analyzer.video_io import (
    FrameWriter,
    MediaError,
    MediaKind,
    analysed_size,
    discover,
    iter_frames,
    media_kind,
    probe,
    read_image,
)


@pytest.fixture(scope="module")
def bridging(test_data: Path) -> Path:
    return test_data / "videos" / "bridging_1rep.mp4"


def _opencv_facts(path: Path) -> tuple[int, int, float, int]:
    capture = cv2.VideoCapture(str(path))
    try:
        return (
            int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            float(capture.get(cv2.CAP_PROP_FPS)),
            int(capture.get(cv2.CAP_PROP_FRAME_COUNT)),
        )
    finally:
        capture.release()


def test_media_kind_from_suffix() -> None:
    assert media_kind(Path("a/B.MP4")) is MediaKind.VIDEO
    assert media_kind(Path("x.jpeg")) is MediaKind.IMAGE
    assert media_kind(Path("notes.txt")) is None
    assert media_kind(Path("README")) is None


def test_discover_lists_visible_files_of_a_folder_sorted(tmp_path: Path) -> None:
    for name in ("b.mp4", "a.txt", ".hidden.mp4"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.mp4").write_bytes(b"x")
    assert discover(tmp_path) == [tmp_path / "a.txt", tmp_path / "b.mp4"]
    assert discover(tmp_path / "b.mp4") == [tmp_path / "b.mp4"]


def test_discover_missing_path_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        discover(tmp_path / "nope.mp4")


def test_probe_real_video_matches_the_container(bridging: Path) -> None:
    info = probe(bridging)
    width, height, fps, count = _opencv_facts(bridging)
    assert info.kind is MediaKind.VIDEO
    assert (info.width, info.height, info.frame_count) == (width, height, count)
    assert info.fps == pytest.approx(fps)


def test_probe_real_image(test_data: Path) -> None:
    path = test_data / "images" / "bus.jpg"
    info = probe(path)
    image = cv2.imread(str(path))
    assert info.kind is MediaKind.IMAGE
    assert (info.height, info.width) == image.shape[:2]
    assert info.frame_count == 1


def test_truncated_video_is_a_media_error(bridging: Path, tmp_path: Path) -> None:
    data = bridging.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match="cannot open video") as excinfo:
        probe(truncated)
    assert excinfo.value.path == truncated


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("notes.txt", "not a video or image"),
        ("fake.mp4", "cannot open video"),
        ("fake.jpg", "cannot decode image"),
        ("empty.png", "cannot decode image"),
    ],
)
def test_non_media_files_are_media_errors(tmp_path: Path, name: str, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"" if name.startswith("empty") else b"this is text, not pixels\n" * 20)
    with pytest.raises(MediaError, match=reason):
        probe(path)


def test_read_image_of_a_folder_is_a_media_error(tmp_path: Path) -> None:
    folder = tmp_path / "dir.png"
    folder.mkdir()
    with pytest.raises(MediaError, match="cannot read file"):
        read_image(folder)


def test_analysed_size_downscales_keeping_aspect_and_never_upscales() -> None:
    assert analysed_size(1280, 720, 640) == (640, 360)
    assert analysed_size(640, 480, 1280) == (640, 480)
    assert analysed_size(1081, 1920, None) == (1081, 1920)
    with pytest.raises(ValueError, match="at least 16"):
        analysed_size(1280, 720, 8)


def test_iter_frames_decodes_every_frame_with_timestamps(bridging: Path) -> None:
    info = probe(bridging)
    frames = list(iter_frames(info))
    assert len(frames) == info.frame_count
    assert [f.index for f in frames] == list(range(len(frames)))
    assert frames[-1].timestamp == pytest.approx((len(frames) - 1) / info.fps)
    assert frames[0].image.shape == (info.height, info.width, 3)
    assert frames[0].image.dtype == np.uint8


def test_iter_frames_downscales_to_max_width(bridging: Path, tmp_path: Path) -> None:
    info = probe(bridging)
    first = next(iter_frames(info, max_width=info.width // 2))
    assert first.image.shape[:2] == (info.height // 2, info.width // 2)
    original = next(iter_frames(info))
    expected = cv2.resize(original.image, (info.width // 2, info.height // 2), interpolation=cv2.INTER_AREA)
    assert np.array_equal(first.image, expected)


def test_iter_frames_of_an_image_yields_one_frame(test_data: Path, tmp_path: Path) -> None:
    # A copy with a non-ASCII name: np.fromfile + imdecode reads it where cv2.imread may not.
    path = tmp_path / "zidané.jpg"
    shutil.copy(test_data / "images" / "zidane.jpg", path)
    frames = list(iter_frames(probe(path), max_width=640))
    assert len(frames) == 1
    assert frames[0].timestamp == 0.0
    assert frames[0].image.shape == (360, 640, 3)


def test_iter_frames_every_nth_keeps_file_positions_and_times(bridging: Path) -> None:
    info = probe(bridging)
    every = list(iter_frames(info))
    third = list(iter_frames(info, every=3))
    assert [f.index for f in third] == list(range(0, len(every), 3))
    assert [f.timestamp for f in third] == [every[i].timestamp for i in range(0, len(every), 3)]
    assert np.array_equal(third[1].image, every[3].image)
    with pytest.raises(ValueError, match="at least 1"):
        next(iter_frames(info, every=0))


def test_frame_writer_writes_a_readable_mp4(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    frames = [np.full((120, 160, 3), 40 * i, dtype=np.uint8) for i in range(5)]
    with FrameWriter(path, fps=10.0) as writer:
        for frame in frames:
            writer.write(frame)
    assert writer.frames == 5
    info = probe(path)
    assert (info.width, info.height, info.frame_count) == (160, 120, 5)
    assert info.fps == pytest.approx(10.0)
    decoded = list(iter_frames(info))
    assert len(decoded) == 5
    # mp4v is lossy: flat grey frames come back within a few levels.
    assert abs(float(decoded[3].image.mean()) - 120.0) < 3.0


def test_frame_writer_writes_one_image(tmp_path: Path) -> None:
    image = np.zeros((30, 40, 3), dtype=np.uint8)
    image[10, 20] = (0, 0, 255)
    FrameWriter(tmp_path / "one.png", fps=None).write(image)
    assert np.array_equal(read_image(tmp_path / "one.png"), image)


def test_frame_writer_reports_unwritable_paths(tmp_path: Path) -> None:
    image = np.zeros((30, 40, 3), dtype=np.uint8)
    with pytest.raises(OSError, match="cannot write image"):
        FrameWriter(tmp_path / "missing" / "one.png", fps=None).write(image)
    with pytest.raises(OSError, match="cannot open"):
        FrameWriter(tmp_path / "missing" / "out.mp4", fps=10.0).write(image)
