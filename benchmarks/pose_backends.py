"""Per-frame cost of the pose backends on CPU: MediaPipe tracking mode, YOLO ONNX single vs batch 4.

Last output line: one JSON object.  Timings interleave the variants so machine load hits all alike.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import cv2

from pose_analyzer.detection.mediapipe import MediaPipeDetector
from pose_analyzer.detection.weights import ensure_onnx_export, resolve_weights
from pose_analyzer.detection.yolo import YoloDetector
from pose_analyzer.detection.yolo_onnx import OnnxPoseModel
from pose_analyzer.types import Frame

DEFAULT_DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
DATA = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DATA
ROUNDS = 5

capture = cv2.VideoCapture(str(DATA / "videos" / "bridging_1rep.mp4"))  # 640x480
images = []
while len(images) < 40:
    ok, image = capture.read()
    if not ok:
        break
    images.append(image)
frames = [Frame(im, i / 30.0, i) for i, im in enumerate(images)]

mediapipe = MediaPipeDetector()
mediapipe.setup()
yolo = YoloDetector()
yolo.setup()
weights = resolve_weights()
static = OnnxPoseModel(ensure_onnx_export(weights, Path.cwd() / ".cache" / "onnx", 640, False), 640, False)

results: dict[str, list[float]] = {
    "mediapipe_tracking": [],
    "yolo_onnx_single": [],
    "yolo_onnx_batch4": [],
    "yolo_onnx_b1export_loop4": [],
}
for _ in range(ROUNDS):
    start = time.perf_counter()
    mediapipe.detect(frames[:20])
    results["mediapipe_tracking"].append((time.perf_counter() - start) * 1000 / 20)
    start = time.perf_counter()
    for f in frames[:8]:
        yolo.detect([f])
    results["yolo_onnx_single"].append((time.perf_counter() - start) * 1000 / 8)
    start = time.perf_counter()
    yolo.detect(frames[:4])
    yolo.detect(frames[4:8])
    results["yolo_onnx_batch4"].append((time.perf_counter() - start) * 1000 / 8)
    start = time.perf_counter()
    static.predict(images[:4], 0.25, 0.7)
    static.predict(images[4:8], 0.25, 0.7)
    results["yolo_onnx_b1export_loop4"].append((time.perf_counter() - start) * 1000 / 8)
summary = {k: round(statistics.median(v), 1) for k, v in results.items()}
summary["batch4_over_single"] = round(summary["yolo_onnx_batch4"] / summary["yolo_onnx_single"], 3)
summary["unit"] = f"ms per 640x480 frame, median of {ROUNDS} rounds"
print(json.dumps(summary))
