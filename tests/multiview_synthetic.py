"""Synthetic 3D people seen through a real rig: ground truth for triangulation tests.

A standing adult (1.7 m, z up, metres, our 21-keypoint layout) placed in the capture volume
of the Pose2Sim demo rig (four cameras 2.5-4.5 m away whose optical axes meet nearest at
(-0.94, -0.02, 0.59) m), turned and moved at random;
``first_order_covariance`` is the error propagation a derived noise bound rests on.
"""

from __future__ import annotations

import numpy as np

from pose_analyzer.multiview import CameraRig

# Our keypoint order (pose_analyzer.keypoints), x to the person's left, y forward, z up.
STANDING = np.array(
    [
        [0.00, 0.08, 1.62],  # nose
        [0.03, 0.06, 1.66],
        [-0.03, 0.06, 1.66],  # eyes
        [0.08, 0.00, 1.63],
        [-0.08, 0.00, 1.63],  # ears
        [0.19, 0.00, 1.42],
        [-0.19, 0.00, 1.42],  # shoulders
        [0.22, 0.02, 1.13],
        [-0.22, 0.02, 1.13],  # elbows
        [0.24, 0.05, 0.87],
        [-0.24, 0.05, 0.87],  # wrists
        [0.10, 0.00, 0.95],
        [-0.10, 0.00, 0.95],  # hips
        [0.11, 0.03, 0.52],
        [-0.11, 0.03, 0.52],  # knees
        [0.11, 0.00, 0.09],
        [-0.11, 0.00, 0.09],  # ankles
        [0.11, -0.06, 0.04],
        [-0.11, -0.06, 0.04],  # heels
        [0.12, 0.15, 0.02],
        [-0.12, 0.15, 0.02],  # foot index
    ]
)


# Where the demo rig's optical axes meet, on the floor; portrait frames leave about +-0.3 m.
CAPTURE_CENTRE = np.array([-0.94, -0.02, 0.0])


def random_people(rng: np.random.Generator, n: int, spread: float = 0.25) -> np.ndarray:
    """``n`` standing skeletons (n, 21, 3): turned about z, moved up to ``spread`` m off the centre."""
    out = np.empty((n, *STANDING.shape))
    for i in range(n):
        a = rng.uniform(-np.pi, np.pi)
        turn = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
        out[i] = STANDING @ turn.T + CAPTURE_CENTRE + np.array([*rng.uniform(-spread, spread, 2), 0.0])
    return out


def project_all(rig: CameraRig, points: np.ndarray) -> np.ndarray:
    """Pixels (C, K, 2) of points (K, 3) in every rig camera, distortion included."""
    return np.stack([cam.project(points) for cam in rig])


def first_order_covariance(
    rig: CameraRig, point: np.ndarray, sigma_px: float, cameras: list[int]
) -> np.ndarray:
    """Covariance (3, 3) of the maximum-likelihood triangulation of ``point`` under isotropic pixel noise.

    Each camera's projection has Jacobian J_c = (f / depth) [r1 - x r3; r2 - y r3] (x, y the
    normalised image coordinates, r_i the rows of R); the information is sum_c J_c^T J_c /
    sigma^2 and the covariance its inverse (Cramer-Rao; the estimator reaches it to first order).
    """
    info = np.zeros((3, 3))
    for c in cameras:
        cam = rig.cameras[c]
        pc = cam.rotation @ point + cam.translation
        x, y, d = pc[0] / pc[2], pc[1] / pc[2], pc[2]
        r = cam.rotation
        jac = np.stack([cam.matrix[0, 0] * (r[0] - x * r[2]), cam.matrix[1, 1] * (r[1] - y * r[2])]) / d
        info += jac.T @ jac / sigma_px**2
    return np.asarray(np.linalg.inv(info))


def squatting_person(knee_deg: float, yaw_deg: float = 0.0) -> np.ndarray:
    """A person (21, 3) squatting with both knees at ``knee_deg`` (180 = standing), at the capture centre.

    Shanks tilt forward by 40 % of the flexion, thighs back by 60 %, the trunk leans forward
    by half the shank tilt; arms reach forward, horizontal.  ``yaw_deg`` turns the person
    about the vertical.  Segment lengths are constant: shank 0.43, thigh 0.43, trunk 0.47,
    upper arm 0.29, forearm 0.26 m.
    """
    flex = np.radians(180.0 - knee_deg)
    a, b = 0.4 * flex, 0.6 * flex
    lean = 0.5 * a
    out = np.zeros((21, 3))
    for side, x in ((0, 0.11), (1, -0.11)):  # left side first in each pair (left = +x)
        ankle = np.array([x, 0.0, 0.09])
        knee = ankle + 0.43 * np.array([0.0, np.sin(a), np.cos(a)])
        hip = knee + 0.43 * np.array([0.0, -np.sin(b), np.cos(b)])
        out[15 + side], out[13 + side], out[11 + side] = ankle, knee, hip
        out[17 + side] = ankle + np.array([0.0, -0.06, -0.05])  # heel
        out[19 + side] = ankle + np.array([0.01, 0.15, -0.07])  # foot index
    hips = 0.5 * (out[11] + out[12])
    up = np.array([0.0, np.sin(lean), np.cos(lean)])
    for side, x in ((0, 0.19), (1, -0.19)):
        shoulder = hips + 0.47 * up + np.array([x, 0.0, 0.0])
        elbow = shoulder + np.array([0.0, 0.29, 0.0])
        out[5 + side], out[7 + side], out[9 + side] = shoulder, elbow, elbow + np.array([0.0, 0.26, 0.0])
        out[3 + side] = hips + 0.68 * up + np.array([0.4 * x, 0.0, 0.0])  # ears
        out[1 + side] = hips + 0.71 * up + np.array([0.15 * x, 0.07, 0.0])  # eyes
    out[0] = hips + 0.69 * up + np.array([0.0, 0.1, 0.0])
    c, s = np.cos(np.radians(yaw_deg)), np.sin(np.radians(yaw_deg))
    turn = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return out @ turn.T + CAPTURE_CENTRE
