"""ZYX Euler rotations (aniportrait.geometry)."""

import math

import numpy as np
import pytest
import torch

from aniportrait.geometry import euler_zyx_to_matrix, matrix_to_euler_zyx

# ---------------------------------------------------------------------------------------------------------------------
# Rotations


def test_euler_matches_product_of_axis_rotations():
    angles = torch.rand(5, 3, dtype=torch.float64) * 4 - 2
    for angle, got in zip(angles.tolist(), euler_zyx_to_matrix(angles)):
        a, b, c = angle
        rz = [[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]]
        ry = [[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]]
        rx = [[1, 0, 0], [0, math.cos(c), -math.sin(c)], [0, math.sin(c), math.cos(c)]]
        torch.testing.assert_close(got, torch.tensor(np.array(rz) @ np.array(ry) @ np.array(rx)))


def test_euler_gives_proper_rotations():
    rot = euler_zyx_to_matrix(torch.randn(4, 6, 3))
    assert rot.shape == (4, 6, 3, 3)
    torch.testing.assert_close(rot @ rot.transpose(-1, -2), torch.eye(3).expand_as(rot), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(4, 6), atol=1e-6, rtol=0)


def test_euler_round_trip():
    angles = torch.rand(100, 3, dtype=torch.float64) * 2 - 1
    angles = angles * torch.tensor([3.0, 1.4, 3.0], dtype=torch.float64)  # middle angle away from +-pi/2
    torch.testing.assert_close(matrix_to_euler_zyx(euler_zyx_to_matrix(angles)), angles)


def test_euler_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\[\.\.\., 3\]"):
        euler_zyx_to_matrix(torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"\[\.\.\., 3, 3\]"):
        matrix_to_euler_zyx(torch.zeros(4, 3))


# ---------------------------------------------------------------------------------------------------------------------
# Procedural rig
