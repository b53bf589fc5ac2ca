"""Portrait-camera rays and the orthogonal rays of manifold super-resolution (reference.md sections 1.4-1.5).

Conventions of the release: a camera at pitch ``phi`` and yaw ``theta`` sits at
``r (sin phi cos theta, cos phi, sin phi sin theta)``, so the frontal camera ``phi = theta = pi/2`` is at
``(0, 0, r)`` and a larger yaw moves it toward -x. It looks at the world origin along its -z axis (OpenGL).
Pixel centres span NDC [-1, 1] exactly (align-corners style); ray index = row * W + column, row 0 at the top.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from aniportrait import constants as K


def camera_origin(camera: torch.Tensor, radius: float = K.CAMERA_RADIUS) -> torch.Tensor:
    """World position of cameras ``camera`` [B, 2] = (pitch, yaw) in radians -> [B, 3]."""
    pitch, yaw = camera[:, 0], camera[:, 1]
    return radius * torch.stack(
        [torch.sin(pitch) * torch.cos(yaw), torch.cos(pitch), torch.sin(pitch) * torch.sin(yaw)], dim=-1
    )


def look_at_rotation(origin: torch.Tensor) -> torch.Tensor:
    """Camera-to-world rotation [B, 3, 3] (columns: right, up, backward) of cameras at ``origin`` looking at 0."""
    forward = F.normalize(-origin, dim=-1)
    world_up = torch.tensor([0.0, 1.0, 0.0], dtype=origin.dtype, device=origin.device).expand_as(forward)
    left = F.normalize(torch.linalg.cross(world_up, forward, dim=-1), dim=-1)
    up = F.normalize(torch.linalg.cross(forward, left, dim=-1), dim=-1)
    return torch.stack([-left, up, -forward], dim=-1)


def camera_directions(resolution: int, fov_degrees: float = K.FOV_DEGREES, *, device=None, dtype=torch.float32):
    """Unit ray directions in camera space [H*W, 3] for a square image (row-major, row 0 at the top)."""
    ndc = torch.linspace(-1.0, 1.0, resolution, device=device, dtype=dtype)
    y, x = torch.meshgrid(-ndc, ndc, indexing="ij")
    z = torch.full_like(x, -1.0 / math.tan(math.radians(fov_degrees) / 2))
    return F.normalize(torch.stack([x, y, z], dim=-1).reshape(-1, 3), dim=-1)


def portrait_rays(
    camera: torch.Tensor,
    resolution: int,
    num_samples: int,
    *,
    radius: float = K.CAMERA_RADIUS,
    fov_degrees: float = K.FOV_DEGREES,
    ray_start: float = K.RAY_START,
    ray_end: float = K.RAY_END,
    origin_offset: tuple[float, float, float] = K.ORIGIN_OFFSET,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample points along the portrait camera's rays.

    Args:
        camera: [B, 2] (pitch, yaw) in radians.
        resolution: image side H = W.
        num_samples: S samples per ray at distances ``linspace(ray_start, ray_end, S)`` along unit rays.

    Returns:
        points [B, H*W, S, 3] in world space, shifted by ``origin_offset`` (the release's body-origin nudge), and
        the un-shifted camera origins [B, 3] (the release measures depth from these).
    """
    origin = camera_origin(camera, radius)
    rotation = look_at_rotation(origin)
    dirs_cam = camera_directions(resolution, fov_degrees, device=camera.device, dtype=camera.dtype)
    dirs = torch.einsum("bij,rj->bri", rotation, dirs_cam)  # [B, R, 3]
    t = torch.linspace(ray_start, ray_end, num_samples, device=camera.device, dtype=camera.dtype)
    offset = torch.tensor(origin_offset, device=camera.device, dtype=camera.dtype)
    points = origin[:, None, None, :] + offset + t[None, None, :, None] * dirs[:, :, None, :]
    return points, origin


def orthogonal_rays(
    resolution: int, num_samples: int, *, batch: int = 1, device=None, dtype=torch.float32
) -> torch.Tensor:
    """The canonical grid of manifold super-resolution, [batch, H*W, S, 3].

    Column j has x = linspace(-SAMPLE_SCALE, SAMPLE_SCALE, W)[j]; row i has
    y = SAMPLE_CENTER + linspace(-SAMPLE_SCALE, SAMPLE_SCALE, H)[i] (row 0 is the LOWEST y, unlike images);
    samples run from z = 0.2 (front) to z = -0.2 (back).
    """
    side = torch.linspace(-K.SAMPLE_SCALE, K.SAMPLE_SCALE, resolution, device=device, dtype=dtype)
    y, x = torch.meshgrid(side + K.SAMPLE_CENTER, side, indexing="ij")
    t = torch.linspace(K.ORTHO_T_NEAR, K.ORTHO_T_FAR, num_samples, device=device, dtype=dtype)
    z = K.ORTHO_ORIGIN_Z - t
    grid = torch.stack(
        [
            x.reshape(-1, 1).expand(-1, num_samples),
            y.reshape(-1, 1).expand(-1, num_samples),
            z.expand(resolution * resolution, -1),
        ],
        dim=-1,
    )
    return grid.expand(batch, -1, -1, -1)
