"""Rotations in the pytorch3d "ZYX" Euler convention, as the release's pose files use them.

Part of the bottom layer: this module imports nothing of ours, and any module may import it.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["euler_zyx_to_matrix", "matrix_to_euler_zyx"]


def _axis_rotation(axis: str, angle: Tensor) -> Tensor:
    """[..., 3, 3] right-handed rotation by ``angle`` [...] about the x, y or z axis."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    if axis == "x":
        rows = (one, zero, zero, zero, cos, -sin, zero, sin, cos)
    elif axis == "y":
        rows = (cos, zero, sin, zero, one, zero, -sin, zero, cos)
    else:
        rows = (cos, -sin, zero, sin, cos, zero, zero, zero, one)
    return torch.stack(rows, dim=-1).reshape(angle.shape + (3, 3))


def euler_zyx_to_matrix(angles: Tensor) -> Tensor:
    """Rotation matrices from ZYX Euler angles: ``R = Rz(a0) @ Ry(a1) @ Rx(a2)``.

    Args:
        angles: [..., 3] (angle about Z, about Y, about X) in radians, any float dtype.

    Returns:
        [..., 3, 3] rotation matrices in ``angles.dtype``, differentiable.

    Example:
        >>> euler_zyx_to_matrix(torch.zeros(6, 3)).shape
        torch.Size([6, 3, 3])
    """
    if angles.shape[-1:] != (3,):
        raise ValueError(f"angles must have shape [..., 3], got {list(angles.shape)}")
    rz = _axis_rotation("z", angles[..., 0])
    ry = _axis_rotation("y", angles[..., 1])
    rx = _axis_rotation("x", angles[..., 2])
    return rz @ ry @ rx


def matrix_to_euler_zyx(matrix: Tensor) -> Tensor:
    """Inverse of :func:`euler_zyx_to_matrix`, exact away from gimbal lock (middle angle near +-pi/2).

    Args:
        matrix: [..., 3, 3] rotation matrices.

    Returns:
        [..., 3] (about Z in (-pi, pi], about Y in [-pi/2, pi/2], about X in (-pi, pi]).
    """
    if matrix.shape[-2:] != (3, 3):
        raise ValueError(f"matrix must have shape [..., 3, 3], got {list(matrix.shape)}")
    # Row 2 of Rz Ry Rx is (-sin y, cos y sin x, cos y cos x); column 0 is cos y (cos z, sin z, *).
    about_y = torch.asin((-matrix[..., 2, 0]).clamp(-1.0, 1.0))
    about_z = torch.atan2(matrix[..., 1, 0], matrix[..., 0, 0])
    about_x = torch.atan2(matrix[..., 2, 1], matrix[..., 2, 2])
    return torch.stack((about_z, about_y, about_x), dim=-1)
