"""Slider values -> one frame's camera, pose and expression (degrees to radians, the documented joints)."""

import math

import numpy as np
import pytest

from aniportrait.render import keyframes as kf
from aniportrait.viewer.controls import ANGLE_SLIDERS, ViewControls


def test_the_rest_controls_give_the_rest_frame():
    rest = ViewControls()
    np.testing.assert_array_equal(rest.camera(), np.array(kf.FRONTAL, np.float32))
    np.testing.assert_array_equal(rest.pose(), np.zeros((6, 3), np.float32))
    np.testing.assert_array_equal(rest.expression(), np.zeros(64, np.float32))


def test_angles_land_on_the_documented_joints_in_radians():
    c = ViewControls(
        camera_yaw=30, camera_pitch=-10, head_yaw=20, head_pitch=-5, head_roll=7, shoulder_tilt=10, shoulder_swing=-8
    )
    np.testing.assert_allclose(c.camera(), [math.pi / 2 - math.radians(10), math.pi / 2 + math.radians(30)], rtol=1e-6)
    pose = c.pose()
    expected = np.zeros((6, 3))
    expected[3] = [math.radians(7), math.radians(20), math.radians(-5)]  # head: ZYX Euler [z, y, x]
    expected[1, 0] = expected[2, 0] = -math.radians(10)  # collars about z
    expected[4, 0] = expected[5, 0] = math.radians(10)  # shoulders about z
    expected[1, 1] = expected[2, 1] = -math.radians(8)  # collars about y
    np.testing.assert_allclose(pose, expected, rtol=1e-6, atol=1e-7)
    assert pose.dtype == np.float32


def test_shoulder_tilt_points_along_the_release_shoulder_keyframes():
    """The release's shoulder keyframes 3 and 4 are +-0.3 rad of exactly this direction."""
    keys = kf.builtin("shoulder").pose
    tilt = ViewControls(shoulder_tilt=math.degrees(0.3)).pose()
    swing = ViewControls(shoulder_swing=math.degrees(0.2)).pose()
    assert any(np.allclose(tilt, k, atol=1e-6) or np.allclose(-tilt, k, atol=1e-6) for k in keys)
    assert any(np.allclose(swing, k, atol=1e-6) or np.allclose(-swing, k, atol=1e-6) for k in keys)


def test_named_coefficients_then_the_indexed_one():
    c = ViewControls(named=(1.5, -0.5), coefficient=7, value=2.0)
    e = c.expression()
    assert e[0] == 1.5 and e[1] == -0.5 and e[7] == 2.0
    assert np.count_nonzero(e) == 3
    assert ViewControls(named=(1.0,), coefficient=0, value=-2.0).expression()[0] == -2.0  # the index overrides


@pytest.mark.parametrize(
    "kwargs",
    [
        {"camera_yaw": 61.0},
        {"head_pitch": float("nan")},
        {"head_roll": float("inf")},
        {"shoulder_tilt": "5"},
        {"named": (3.5,)},
        {"named": (0.0,) * 65},
        {"coefficient": 64},
        {"coefficient": -1},
        {"coefficient": 1.5},
        {"value": -3.01},
        {"head_yaw": True},
    ],
)
def test_out_of_range_or_non_numeric_controls_are_refused(kwargs):
    with pytest.raises(ValueError):
        ViewControls(**kwargs)


def test_every_angle_slider_is_a_field_and_spans_zero():
    for name, (low, high, step, _) in ANGLE_SLIDERS.items():
        assert hasattr(ViewControls(), name)
        assert low < 0 < high and step > 0
