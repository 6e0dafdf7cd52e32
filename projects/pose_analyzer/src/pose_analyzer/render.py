"""Overlays drawn on analysed frames: skeleton, joint angles, rep count and last score.

Pure drawing on a copy of the frame with OpenCV; nothing here knows about files.
Keypoints with NaN coordinates or a confidence under ``min_confidence`` are not drawn,
nor are bones that touch them, so a missing wrist never becomes a line to (0, 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from pose_analyzer.keypoints import KEYPOINT_NAMES, SKELETON
from pose_analyzer.types import FrameAnalysis, PersonAnalysis

Color = tuple[int, int, int]
Image = npt.NDArray[np.uint8]
Keypoints = npt.NDArray[np.floating[Any]]

# BGR colours, one per track id (cycled); chosen to stay distinct on typical gym footage.
TRACK_COLORS: tuple[Color, ...] = (
    (0, 200, 255),
    (255, 128, 0),
    (0, 230, 0),
    (255, 0, 200),
    (0, 128, 255),
    (200, 200, 0),
)
UNTRACKED_COLOR: Color = (200, 200, 200)
KEYPOINT_COLOR: Color = (255, 255, 255)
TEXT_COLOR: Color = (255, 255, 255)
PANEL_COLOR: Color = (32, 32, 32)
REJECTED_COLOR: Color = (0, 90, 255)
# A rejected candidate rep stays on the panel this long after it ended.
REJECTED_SHOWN_S = 3.0


@dataclass(frozen=True, slots=True)
class OverlayStyle:
    """Sizes are for a 640-pixel-wide frame and scale with the frame width."""

    min_confidence: float = 0.3
    bone_thickness: int = 3
    keypoint_radius: int = 4
    font_scale: float = 0.5
    show_angles: bool = True


def track_color(track_id: int | None) -> Color:
    """The colour a track is drawn in; untracked people are grey."""
    if track_id is None:
        return UNTRACKED_COLOR
    return TRACK_COLORS[track_id % len(TRACK_COLORS)]


def visible_keypoints(keypoints: Keypoints, min_confidence: float) -> npt.NDArray[np.bool_]:
    """A boolean mask of keypoints with finite coordinates and confidence >= ``min_confidence``."""
    finite = np.isfinite(keypoints[:, 0]) & np.isfinite(keypoints[:, 1])
    confident = np.nan_to_num(keypoints[:, 2], nan=0.0) >= min_confidence
    return np.asarray(finite & confident)


def draw_analysis(
    image: Image,
    analysis: FrameAnalysis,
    exercise: str | None = None,
    style: OverlayStyle | None = None,
) -> Image:
    """Return a copy of the BGR ``image`` with every person of ``analysis`` drawn on it.

    Raises:
        ValueError: ``image`` is not an HxWx3 uint8 array.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 BGR image, got {image.dtype} {image.shape}")
    style = style or OverlayStyle()
    canvas = image.copy()
    scale = max(canvas.shape[1] / 640.0, 0.5)
    for person in analysis.people:
        _draw_person(canvas, person, style, scale)
    _draw_panel(canvas, analysis, exercise, style, scale)
    return canvas


def _point(keypoints: Keypoints, index: int) -> tuple[int, int]:
    return round(float(keypoints[index, 0])), round(float(keypoints[index, 1]))


def _draw_person(canvas: Image, person: PersonAnalysis, style: OverlayStyle, scale: float) -> None:
    keypoints = person.person.keypoints
    visible = visible_keypoints(keypoints, style.min_confidence)
    color = track_color(person.person.track_id)
    thickness = max(1, round(style.bone_thickness * scale))
    radius = max(1, round(style.keypoint_radius * scale))
    for a, b in SKELETON:
        if visible[a] and visible[b]:
            cv2.line(canvas, _point(keypoints, a), _point(keypoints, b), color, thickness, cv2.LINE_AA)
    for index in np.flatnonzero(visible):
        center = _point(keypoints, int(index))
        cv2.circle(canvas, center, radius, KEYPOINT_COLOR, -1, cv2.LINE_AA)
        cv2.circle(canvas, center, radius, color, max(1, thickness // 2), cv2.LINE_AA)
    if style.show_angles:
        _draw_angles(canvas, person, visible, style, scale)


def _draw_angles(
    canvas: Image, person: PersonAnalysis, visible: npt.NDArray[np.bool_], style: OverlayStyle, scale: float
) -> None:
    """Write each angle next to the joint of the same name (``left_knee`` at the left knee)."""
    keypoints = person.person.keypoints
    for name, degrees in person.angles.items():
        if name not in KEYPOINT_NAMES or not math.isfinite(degrees):
            continue
        index = KEYPOINT_NAMES.index(name)
        if not visible[index]:
            continue
        x, y = _point(keypoints, index)
        offset = round(8 * scale)
        _text(canvas, f"{degrees:.0f}", (x + offset, y - offset), style.font_scale * scale, scale)


def _text(
    canvas: Image,
    text: str,
    origin: tuple[int, int],
    font_scale: float,
    scale: float,
    color: Color = TEXT_COLOR,
) -> None:
    # A dark outline under the white text keeps it readable on any background.
    thickness = max(1, round(scale))
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(canvas, text, origin, font, font_scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.putText(canvas, text, origin, font, font_scale, color, thickness, cv2.LINE_AA)


def _draw_panel(
    canvas: Image, analysis: FrameAnalysis, exercise: str | None, style: OverlayStyle, scale: float
) -> None:
    """Top-left panel: time and exercise, then one line per person with reps (per side for
    ``side: each``), last score and phase, and under it for a few seconds the reason the
    person's latest candidate rep did not count."""
    lines: list[tuple[str, Color]] = [
        (f"t={analysis.timestamp:6.2f}s" + (f"  {exercise}" if exercise else ""), TEXT_COLOR)
    ]
    for person in analysis.people:
        track = person.person.track_id
        label = f"#{track}" if track is not None else "person"
        line = f"{label} reps {person.rep_count}"
        if person.last_rep is not None and not math.isnan(person.last_rep.score):
            line += f"  score {person.last_rep.score:.0f}"
        if person.count_by_side:
            line += "  " + " ".join(
                f"{side[:1].upper()}{n}" for side, n in sorted(person.count_by_side.items())
            )
        if person.phase:
            line += f"  {person.phase}"
        lines.append((line, track_color(track)))
        rejected = person.last_rejected
        if rejected is not None and 0.0 <= analysis.timestamp - rejected.end_time <= REJECTED_SHOWN_S:
            lines.append((f"  not counted: {rejected.message}", REJECTED_COLOR))
    font_scale = style.font_scale * scale * 1.2
    line_height = round(22 * scale)
    width = round(max(len(text) for text, _ in lines) * 11 * scale) + 12
    height = line_height * len(lines) + round(8 * scale)
    panel = canvas[:height, :width]
    # Blend rather than paint so the video under the panel stays visible.
    canvas[:height, :width] = cv2.addWeighted(panel, 0.4, np.full_like(panel, PANEL_COLOR), 0.6, 0.0)
    for row, (text, color) in enumerate(lines):
        _text(canvas, text, (6, line_height * (row + 1)), font_scale, scale, color)
