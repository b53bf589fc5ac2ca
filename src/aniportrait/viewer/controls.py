"""The viewer's controls, without the user interface: slider values -> one frame's camera, pose and expression.

Angles are in degrees (sliders), offsets from the rest frame: the frontal camera, the canonical mean pose, the
neutral expression. The pose rows are SMPL joints 12-17 (neck, left and right collar, head, left and right
shoulder), each a ZYX Euler offset [z, y, x] in radians, as in the keyframe files:

- head yaw, pitch and roll turn the head joint (15) about y, x and z;
- shoulder tilt raises one shoulder and lowers the other: the collars (13, 14) turn about z by -t and the shoulders
  (16, 17) by +t, the direction of the release's shoulder keyframes 3 and 4 (t = +-0.3 rad there);
- shoulder swing turns both collars about y, the direction of its shoulder keyframes 1 and 2 (+-0.2 rad there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from aniportrait.render import keyframes as kf

HEAD, LEFT_COLLAR, RIGHT_COLLAR, LEFT_SHOULDER, RIGHT_SHOULDER = 3, 1, 2, 4, 5  # rows of the [6, 3] pose
Z, Y, X = 0, 1, 2  # columns of a ZYX Euler row

# Slider ranges: name -> (low, high, step, label). Angles in degrees.
ANGLE_SLIDERS = {
    "camera_yaw": (-60.0, 60.0, 1.0, "camera yaw (deg)"),
    "camera_pitch": (-30.0, 30.0, 1.0, "camera pitch (deg)"),
    "head_yaw": (-45.0, 45.0, 1.0, "head yaw (deg)"),
    "head_pitch": (-30.0, 30.0, 1.0, "head pitch (deg)"),
    "head_roll": (-30.0, 30.0, 1.0, "head roll (deg)"),
    "shoulder_tilt": (-25.0, 25.0, 1.0, "shoulder tilt (deg)"),
    "shoulder_swing": (-20.0, 20.0, 1.0, "shoulder swing (deg)"),
}
EXPRESSION_LIMIT = 3.0  # named and generic coefficient sliders span [-3, 3] (real faces stay within about +-3)
EXPRESSION_STEP = 0.05


@dataclass(frozen=True)
class ViewControls:
    """One frame's slider values. ``named`` holds the leading expression coefficients that have names (as many as
    the model's 3DMM names); ``coefficient``/``value`` set one more coefficient by index (it overrides a named one)."""

    camera_yaw: float = 0.0
    camera_pitch: float = 0.0
    head_yaw: float = 0.0
    head_pitch: float = 0.0
    head_roll: float = 0.0
    shoulder_tilt: float = 0.0
    shoulder_swing: float = 0.0
    named: tuple[float, ...] = ()
    coefficient: int = 0
    value: float = 0.0

    def __post_init__(self) -> None:
        for field in fields(self):
            if field.name in ANGLE_SLIDERS:
                low, high, _, label = ANGLE_SLIDERS[field.name]
                _check_number(getattr(self, field.name), low, high, label)
        for i, v in enumerate(self.named):
            _check_number(v, -EXPRESSION_LIMIT, EXPRESSION_LIMIT, f"expression coefficient {i}")
        if len(self.named) > kf.EXPRESSION_DIM:
            raise ValueError(f"at most {kf.EXPRESSION_DIM} named expression coefficients, got {len(self.named)}")
        if isinstance(self.coefficient, bool) or not float(self.coefficient).is_integer():
            raise ValueError(f"coefficient index must be an integer, got {self.coefficient!r}")
        if not 0 <= int(self.coefficient) < kf.EXPRESSION_DIM:
            raise ValueError(f"coefficient index must be in [0, {kf.EXPRESSION_DIM - 1}], got {self.coefficient}")
        _check_number(self.value, -EXPRESSION_LIMIT, EXPRESSION_LIMIT, "coefficient value")

    def camera(self) -> np.ndarray:
        """[2] (pitch, yaw) in radians."""
        pitch, yaw = kf.FRONTAL
        return np.array([pitch + math.radians(self.camera_pitch), yaw + math.radians(self.camera_yaw)], np.float32)

    def pose(self) -> np.ndarray:
        """[6, 3] ZYX Euler offsets in radians."""
        pose = np.zeros((kf.NUM_POSE_JOINTS, 3), np.float32)
        pose[HEAD, Y] = math.radians(self.head_yaw)
        pose[HEAD, X] = math.radians(self.head_pitch)
        pose[HEAD, Z] = math.radians(self.head_roll)
        tilt, swing = math.radians(self.shoulder_tilt), math.radians(self.shoulder_swing)
        pose[[LEFT_COLLAR, RIGHT_COLLAR], Z] = -tilt
        pose[[LEFT_SHOULDER, RIGHT_SHOULDER], Z] = tilt
        pose[[LEFT_COLLAR, RIGHT_COLLAR], Y] = swing
        return pose

    def expression(self) -> np.ndarray:
        """[64] coefficients: the named ones, then the indexed one."""
        expression = np.zeros(kf.EXPRESSION_DIM, np.float32)
        expression[: len(self.named)] = self.named
        if self.value != 0.0:
            expression[int(self.coefficient)] = self.value
        return expression


def _check_number(value, low: float, high: float, label: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{label} must be a number, got {value!r}")
    if not math.isfinite(float(value)) or not low <= float(value) <= high:
        raise ValueError(f"{label} must be in [{low:g}, {high:g}], got {value!r}")
