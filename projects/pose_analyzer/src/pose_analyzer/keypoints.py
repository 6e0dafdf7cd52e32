"""The one keypoint convention of pose_analyzer.

Every backend reports people in this layout: the 17 COCO keypoints in COCO order,
followed by four foot points that only MediaPipe sees (heels and big-toe tips; NaN
with confidence 0 from backends that lack them).  Coordinates are pixels of the
analysed frame, ``x`` to the right and ``y`` down; the third column is a confidence
in [0, 1] (MediaPipe's visibility, YOLO's keypoint confidence).
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
import numpy.typing as npt


class Keypoint(IntEnum):
    NOSE = 0
    LEFT_EYE = 1
    RIGHT_EYE = 2
    LEFT_EAR = 3
    RIGHT_EAR = 4
    LEFT_SHOULDER = 5
    RIGHT_SHOULDER = 6
    LEFT_ELBOW = 7
    RIGHT_ELBOW = 8
    LEFT_WRIST = 9
    RIGHT_WRIST = 10
    LEFT_HIP = 11
    RIGHT_HIP = 12
    LEFT_KNEE = 13
    RIGHT_KNEE = 14
    LEFT_ANKLE = 15
    RIGHT_ANKLE = 16
    LEFT_HEEL = 17
    RIGHT_HEEL = 18
    LEFT_FOOT_INDEX = 19
    RIGHT_FOOT_INDEX = 20


NUM_KEYPOINTS = len(Keypoint)
KEYPOINT_NAMES: tuple[str, ...] = tuple(k.name.lower() for k in Keypoint)
NUM_COCO_KEYPOINTS = 17

# MediaPipe Pose's 33 landmarks -> our layout: index i of this array is the MediaPipe
# landmark that fills our keypoint i.
MEDIAPIPE_TO_OURS: npt.NDArray[np.intp] = np.array(
    [0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32], dtype=np.intp
)

# Bones drawn on overlays, as pairs of our keypoint indices.
SKELETON: tuple[tuple[int, int], ...] = (
    (Keypoint.LEFT_SHOULDER, Keypoint.RIGHT_SHOULDER),
    (Keypoint.LEFT_SHOULDER, Keypoint.LEFT_ELBOW),
    (Keypoint.LEFT_ELBOW, Keypoint.LEFT_WRIST),
    (Keypoint.RIGHT_SHOULDER, Keypoint.RIGHT_ELBOW),
    (Keypoint.RIGHT_ELBOW, Keypoint.RIGHT_WRIST),
    (Keypoint.LEFT_SHOULDER, Keypoint.LEFT_HIP),
    (Keypoint.RIGHT_SHOULDER, Keypoint.RIGHT_HIP),
    (Keypoint.LEFT_HIP, Keypoint.RIGHT_HIP),
    (Keypoint.LEFT_HIP, Keypoint.LEFT_KNEE),
    (Keypoint.LEFT_KNEE, Keypoint.LEFT_ANKLE),
    (Keypoint.RIGHT_HIP, Keypoint.RIGHT_KNEE),
    (Keypoint.RIGHT_KNEE, Keypoint.RIGHT_ANKLE),
    (Keypoint.LEFT_ANKLE, Keypoint.LEFT_HEEL),
    (Keypoint.LEFT_HEEL, Keypoint.LEFT_FOOT_INDEX),
    (Keypoint.LEFT_ANKLE, Keypoint.LEFT_FOOT_INDEX),
    (Keypoint.RIGHT_ANKLE, Keypoint.RIGHT_HEEL),
    (Keypoint.RIGHT_HEEL, Keypoint.RIGHT_FOOT_INDEX),
    (Keypoint.RIGHT_ANKLE, Keypoint.RIGHT_FOOT_INDEX),
    (Keypoint.NOSE, Keypoint.LEFT_EYE),
    (Keypoint.NOSE, Keypoint.RIGHT_EYE),
    (Keypoint.LEFT_EYE, Keypoint.LEFT_EAR),
    (Keypoint.RIGHT_EYE, Keypoint.RIGHT_EAR),
)


def empty_keypoints() -> npt.NDArray[np.float32]:
    """A (NUM_KEYPOINTS, 3) array meaning 'nothing seen': NaN coordinates, zero confidence."""
    kps = np.full((NUM_KEYPOINTS, 3), np.nan, dtype=np.float32)
    kps[:, 2] = 0.0
    return kps
