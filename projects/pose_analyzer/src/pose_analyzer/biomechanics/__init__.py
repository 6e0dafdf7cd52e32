"""Joint angles, kinematics, symmetry and centre of mass: numpy only, vectorised over keypoints."""

from pose_analyzer.biomechanics.angles import ANGLE_NAMES, JOINT_ANGLES, interior_angle, joint_angles
from pose_analyzer.biomechanics.com import center_of_mass
from pose_analyzer.biomechanics.kinematics import angular_acceleration, angular_velocity, range_of_motion
from pose_analyzer.biomechanics.measures import MEASURE_NAMES, body_measures
from pose_analyzer.biomechanics.symmetry import symmetry_index, symmetry_indices

__all__ = [
    "ANGLE_NAMES",
    "JOINT_ANGLES",
    "MEASURE_NAMES",
    "angular_acceleration",
    "angular_velocity",
    "body_measures",
    "center_of_mass",
    "interior_angle",
    "joint_angles",
    "range_of_motion",
    "symmetry_index",
    "symmetry_indices",
]
