"""Keypoint similarity and COCO-style average precision, numpy only.

``object_keypoint_similarity`` is COCO's OKS; the tracker also uses it to compare a
person with the same person one frame later.  ``keypoint_average_precision`` follows
COCO's keypoint evaluation (greedy matching by score, 101-point interpolated precision,
OKS thresholds 0.50:0.95) without pycocotools.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

# Per-keypoint falloff of COCO's keypoint evaluation, in COCO order.
COCO_SIGMAS: npt.NDArray[np.float64] = (
    np.array(
        [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]
    )
    / 10.0
)
OKS_THRESHOLDS: npt.NDArray[np.float64] = np.linspace(0.5, 0.95, 10)


def object_keypoint_similarity(
    predicted: npt.NDArray[np.floating[Any]],
    reference: npt.NDArray[np.floating[Any]],
    visible: npt.NDArray[np.bool_],
    area: float,
) -> float:
    """COCO OKS between two (17, 2+) keypoint arrays, over the ``visible`` reference points.

    ``area`` is the reference person's area in pixels squared (COCO: segment area; a box
    area works for tracking).  Returns 0.0 when no reference point is visible.

    Raises:
        ValueError: arrays that are not 17 keypoints, or a non-positive area.
    """
    if predicted.shape[0] != len(COCO_SIGMAS) or reference.shape[0] != len(COCO_SIGMAS):
        raise ValueError(
            f"expected {len(COCO_SIGMAS)} keypoints, got {predicted.shape} and {reference.shape}"
        )
    if area <= 0:
        raise ValueError(f"area must be positive, got {area}")
    if not visible.any():
        return 0.0
    d2 = np.sum((predicted[:, :2] - reference[:, :2]) ** 2, axis=1)
    e = d2 / ((2 * COCO_SIGMAS) ** 2 * area * 2)
    return float(np.exp(-e[visible]).mean())


@dataclass(slots=True)
class GroundTruthPerson:
    """One annotated person: (17, 3) COCO keypoints with visibility flags, box xywh, segment area."""

    keypoints: npt.NDArray[np.floating[Any]]
    box_xywh: tuple[float, float, float, float]
    area: float

    @property
    def ignored(self) -> bool:
        """COCO ignores people without a single labelled keypoint."""
        return not bool((self.keypoints[:, 2] > 0).any())


@dataclass(slots=True)
class PredictedPerson:
    """One detection to evaluate: (17, 2+) keypoints in pixels and a score."""

    keypoints: npt.NDArray[np.floating[Any]]
    score: float


def _box_ioa(keypoints: npt.NDArray[np.floating[Any]], box_xywh: tuple[float, float, float, float]) -> bool:
    """Whether most of a prediction's keypoints fall inside an ignored person's box."""
    x, y, w, h = box_xywh
    inside = (
        (keypoints[:, 0] >= x)
        & (keypoints[:, 0] <= x + w)
        & (keypoints[:, 1] >= y)
        & (keypoints[:, 1] <= y + h)
    )
    return bool(inside.mean() > 0.5)


def keypoint_average_precision(
    images: list[tuple[list[GroundTruthPerson], list[PredictedPerson]]], max_detections: int = 20
) -> float:
    """COCO keypoint AP (mean over OKS 0.50:0.95) of predictions against ground truth.

    ``images`` pairs each image's ground truth with its predictions.  Differences from
    pycocotools, kept small on purpose: an ignored person (no labelled keypoint) absorbs
    a prediction whose keypoints mostly fall inside its box instead of an OKS to its box.

    Raises:
        ValueError: no ground-truth person to evaluate.
    """
    num_positive = sum(not gt.ignored for gts, _ in images for gt in gts)
    if num_positive == 0:
        raise ValueError("no annotated person to evaluate against")
    precisions = []
    for threshold in OKS_THRESHOLDS:
        scored: list[tuple[float, bool]] = []
        for gts, preds in images:
            ranked = sorted(preds, key=lambda p: -p.score)[:max_detections]
            taken = [False] * len(gts)
            for pred in ranked:
                best, best_oks = -1, threshold
                for index, gt in enumerate(gts):
                    if taken[index] or gt.ignored:
                        continue
                    oks = object_keypoint_similarity(
                        pred.keypoints, gt.keypoints, gt.keypoints[:, 2] > 0, gt.area
                    )
                    if oks >= best_oks:
                        best, best_oks = index, oks
                if best >= 0:
                    taken[best] = True
                    scored.append((pred.score, True))
                elif not any(gt.ignored and _box_ioa(pred.keypoints, gt.box_xywh) for gt in gts):
                    scored.append((pred.score, False))
        precisions.append(_interpolated_ap(scored, num_positive))
    return float(np.mean(precisions))


def _interpolated_ap(scored: list[tuple[float, bool]], num_positive: int) -> float:
    """101-point interpolated average precision, as COCO computes it."""
    if not scored:
        return 0.0
    order = sorted(scored, key=lambda item: -item[0])
    hits = np.cumsum([hit for _, hit in order])
    recall = hits / num_positive
    precision = hits / np.arange(1, len(order) + 1)
    # Precision envelope: the best precision at this recall or any higher one.
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    samples = []
    for level in np.linspace(0.0, 1.0, 101):
        index = int(np.searchsorted(recall, level, side="left"))
        samples.append(precision[index] if index < len(precision) else 0.0)
    return float(np.mean(samples))
