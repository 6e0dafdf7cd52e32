"""YOLO pose inference through an ONNX export in onnxruntime: letterbox, run, decode, NMS.

Reproduces what ultralytics does around the network (letterbox with grey 114 padding,
RGB in [0, 1], confidence filter, class-agnostic NMS, mapping back to the frame) with
numpy and OpenCV only, so the CPU path needs neither torch nor ultralytics at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from pose_analyzer.detection.base import DetectorError

NUM_YOLO_KEYPOINTS = 17
_PAD_VALUE = 114
_MAX_DETECTIONS = 300


@dataclass(slots=True)
class RawPoses:
    """One frame's people as the network sees them, mapped back to frame pixels.

    ``boxes`` (N, 4) xyxy, ``scores`` (N,), ``keypoints`` (N, 17, 3) x, y, confidence.
    """

    boxes: npt.NDArray[np.float32]
    scores: npt.NDArray[np.float32]
    keypoints: npt.NDArray[np.float32]


@dataclass(slots=True)
class _Letterbox:
    gain: float
    pad_x: float
    pad_y: float
    width: int
    height: int


def letterbox(image: npt.NDArray[np.uint8], size: int) -> tuple[npt.NDArray[np.uint8], _Letterbox]:
    """Scale ``image`` to fit a ``size`` square keeping its aspect ratio, pad the rest with grey.

    Returns the padded BGR image and how to map its coordinates back.
    """
    height, width = image.shape[:2]
    gain = min(size / height, size / width)
    new_w, new_h = round(width * gain), round(height * gain)
    pad_x, pad_y = (size - new_w) / 2, (size - new_h) / 2
    resized = image if (new_w, new_h) == (width, height) else cv2.resize(image, (new_w, new_h))
    # The same rounding as ultralytics' LetterBox, so both paths see the same pixels.
    top, bottom = round(pad_y - 0.1), round(pad_y + 0.1)
    left, right = round(pad_x - 0.1), round(pad_x + 0.1)
    padded = cv2.copyMakeBorder(
        resized, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(_PAD_VALUE,) * 3
    )
    return np.asarray(padded, dtype=np.uint8), _Letterbox(gain, float(left), float(top), width, height)


def to_input(images: list[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
    """Stack letterboxed BGR uint8 images into the network's NCHW float32 RGB [0, 1] input."""
    batch = np.stack(images)[..., ::-1].transpose(0, 3, 1, 2)
    return np.ascontiguousarray(batch, dtype=np.float32) / 255.0


def nms(
    boxes: npt.NDArray[np.float32], scores: npt.NDArray[np.float32], iou_threshold: float
) -> npt.NDArray[np.intp]:
    """Indices of the boxes kept by greedy non-maximum suppression, best score first."""
    order = np.argsort(-scores, kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        x1 = np.maximum(boxes[best, 0], boxes[rest, 0])
        y1 = np.maximum(boxes[best, 1], boxes[rest, 1])
        x2 = np.minimum(boxes[best, 2], boxes[rest, 2])
        y2 = np.minimum(boxes[best, 3], boxes[rest, 3])
        inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        iou = inter / (areas[best] + areas[rest] - inter + 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.intp)


def decode(prediction: npt.NDArray[np.float32], box: _Letterbox, conf: float, iou: float) -> RawPoses:
    """Turn one image's raw output (56, anchors) into people in frame pixels.

    Rows are cx, cy, w, h, person score, then 17 x (x, y, sigmoid confidence), in the
    letterboxed image's pixels.
    """
    rows = prediction.T
    rows = rows[rows[:, 4] > conf]
    cx, cy, w, h = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    keep = nms(boxes, rows[:, 4], iou)[:_MAX_DETECTIONS]
    boxes, scores = boxes[keep], rows[keep, 4]
    kpts = rows[keep, 5:].reshape(-1, NUM_YOLO_KEYPOINTS, 3).copy()

    boxes[:, [0, 2]] = np.clip((boxes[:, [0, 2]] - box.pad_x) / box.gain, 0, box.width)
    boxes[:, [1, 3]] = np.clip((boxes[:, [1, 3]] - box.pad_y) / box.gain, 0, box.height)
    kpts[..., 0] = np.clip((kpts[..., 0] - box.pad_x) / box.gain, 0, box.width)
    kpts[..., 1] = np.clip((kpts[..., 1] - box.pad_y) / box.gain, 0, box.height)
    return RawPoses(boxes.astype(np.float32), scores.astype(np.float32), kpts.astype(np.float32))


class OnnxPoseModel:
    """An onnxruntime session over a YOLO pose export, fed one batch of frames per call."""

    def __init__(self, path: Path, imgsz: int, dynamic_batch: bool) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # Idle worker threads would otherwise spin for the next job, stealing CPU from the
        # video decoders and MediaPipe that share the machine (measured: 875 vs 1440 ms a
        # frame on a loaded 2-core machine, docs/detection.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise DetectorError(f"onnxruntime cannot load {path}: {exc}") from exc
        self._input = self._session.get_inputs()[0].name
        self._imgsz = imgsz
        self._dynamic_batch = dynamic_batch

    def predict(self, images: list[npt.NDArray[np.uint8]], conf: float, iou: float) -> list[RawPoses]:
        """People in each BGR image, in order.  A dynamic export runs them as one batch."""
        boxed = [letterbox(image, self._imgsz) for image in images]
        if self._dynamic_batch:
            batches = [to_input([padded for padded, _ in boxed])]
        else:
            batches = [to_input([padded]) for padded, _ in boxed]
        outputs = np.concatenate([self._session.run(None, {self._input: b})[0] for b in batches])
        return [decode(out, meta, conf, iou) for out, (_, meta) in zip(outputs, boxed, strict=True)]
