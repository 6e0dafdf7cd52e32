"""Multi-camera 3D: calibrated rigs, triangulation and 3D biomechanics (no web framework here)."""

from pose_analyzer.multiview.calibration_io import (
    RIG_FORMATS,
    parse_rig_text,
    read_rig,
    rig_from_dict,
    rig_to_dict,
    rig_to_toml,
    write_toml,
)
from pose_analyzer.multiview.rig import Camera, CameraRig, RigError, validate_rig
from pose_analyzer.multiview.triangulation import Triangulation, Triangulator, triangulate

__all__ = [
    "RIG_FORMATS",
    "Camera",
    "CameraRig",
    "RigError",
    "Triangulation",
    "Triangulator",
    "parse_rig_text",
    "read_rig",
    "rig_from_dict",
    "rig_to_dict",
    "rig_to_toml",
    "triangulate",
    "validate_rig",
    "write_toml",
]
