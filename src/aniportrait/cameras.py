"""Portrait-camera rays and the orthogonal rays of manifold super-resolution.

As in the release: ``gen_video.py`` and ``samplers/utils.py`` (portrait camera), ``ManifoldSRGenerator3d.manifold_sr``
(orthogonal rays).

Conventions of the release: a camera at pitch ``phi`` and yaw ``theta`` sits at
``r (sin phi cos theta, cos phi, sin phi sin theta)``, so the frontal camera ``phi = theta = pi/2`` is at
``(0, 0, r)`` and a larger yaw moves it toward -x. It looks at the world origin along its -z axis (OpenGL).
Pixel centres span NDC [-1, 1] exactly (align-corners style); ray index = row * W + column, row 0 at the top.

The release's semantics and the quirks kept for parity: docs/release.md.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from aniportrait import constants
from aniportrait.geometry import euler_zyx_to_matrix


def camera_origin(camera: torch.Tensor, radius: float = constants.CAMERA_RADIUS) -> torch.Tensor:
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


def camera_directions(resolution: int, fov_degrees: float = constants.FOV_DEGREES, *, device=None, dtype=torch.float32):
    """Unit ray directions in camera space [H*W, 3] for a square image (row-major, row 0 at the top)."""
    ndc = torch.linspace(-1.0, 1.0, resolution, device=device, dtype=dtype)
    y, x = torch.meshgrid(-ndc, ndc, indexing="ij")
    z = torch.full_like(x, -1.0 / math.tan(math.radians(fov_degrees) / 2))
    return F.normalize(torch.stack([x, y, z], dim=-1).reshape(-1, 3), dim=-1)


def camera_ray_directions(
    camera: torch.Tensor,
    resolution: int,
    *,
    radius: float = constants.CAMERA_RADIUS,
    fov_degrees: float = constants.FOV_DEGREES,
) -> torch.Tensor:
    """Unit world-space directions [B, H*W, 3] of the portrait camera's pixel rays (row-major, top row first)."""
    rotation = look_at_rotation(camera_origin(camera, radius))
    dirs_cam = camera_directions(resolution, fov_degrees, device=camera.device, dtype=camera.dtype)
    return torch.einsum("bij,rj->bri", rotation, dirs_cam)


def portrait_rays(
    camera: torch.Tensor,
    resolution: int,
    num_samples: int,
    *,
    radius: float = constants.CAMERA_RADIUS,
    fov_degrees: float = constants.FOV_DEGREES,
    ray_start: float = constants.RAY_START,
    ray_end: float = constants.RAY_END,
    origin_offset: tuple[float, float, float] = constants.ORIGIN_OFFSET,
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
    dirs = camera_ray_directions(camera, resolution, radius=radius, fov_degrees=fov_degrees)
    t = torch.linspace(ray_start, ray_end, num_samples, device=camera.device, dtype=camera.dtype)
    offset = torch.tensor(origin_offset, device=camera.device, dtype=camera.dtype)
    points = origin[:, None, None, :] + offset + t[None, None, :, None] * dirs[:, :, None, :]
    return points, origin


def orthogonal_rays(
    resolution: int,
    num_samples: int,
    *,
    batch: int = 1,
    device=None,
    dtype=torch.float32,
    lookup_side: int | None = None,
    offset: tuple[float, float] | torch.Tensor | None = None,
    centred: bool = False,
) -> torch.Tensor:
    """The canonical grid of manifold super-resolution, [batch, H*W, S, 3].

    Column j has x = linspace(-SAMPLE_SCALE, SAMPLE_SCALE, W)[j]; row i has
    y = SAMPLE_CENTER + linspace(-SAMPLE_SCALE, SAMPLE_SCALE, H)[i] (row 0 is the LOWEST y, unlike images);
    samples run from z = 0.2 (front) to z = -0.2 (back).

    Textures are looked up with ``align_corners=False`` although their texels are laid out this way (the release's
    half-texel quirk), so a side-N texture shows the field at N / (N - 1) times the looked-up point's offset from the
    box's centre. With ``lookup_side`` N (and a different ``resolution``), the texels are placed instead where a
    side-N texture's lookup reads: ``N / (N - 1) * SAMPLE_SCALE * ((2 j + 1) / resolution - 1)``, so the finer
    texture shows the same figure as the side-N one, only sharper (``resolution == N`` gives the linspace itself).
    ``centred`` (``lookup_side`` then unused) places texel j at ``SAMPLE_SCALE * ((2 j + 1) / resolution - 1)``, the
    centre of the cell an ``align_corners=False`` lookup reads it in, so a texture of any side shows the field at
    the looked-up point (a model's ``texel_centres``). ``offset`` = (dx, dy) moves every texel by that fraction of
    the texel spacing (training's texel jitter).
    """
    if centred or (lookup_side is not None and lookup_side != resolution):
        # Cell centres, magnified as a side-N lookup shows its texels unless centred.
        magnify = 1.0 if centred else lookup_side / (lookup_side - 1)
        j = torch.arange(resolution, device=device, dtype=dtype)
        side = magnify * constants.SAMPLE_SCALE * ((2 * j + 1) / resolution - 1)
    else:
        side = torch.linspace(-constants.SAMPLE_SCALE, constants.SAMPLE_SCALE, resolution, device=device, dtype=dtype)
    if offset is None:
        y, x = torch.meshgrid(side + constants.SAMPLE_CENTER, side, indexing="ij")
    else:
        offset = torch.as_tensor(offset, device=device, dtype=dtype)
        spacing = side[1] - side[0]
        y, x = torch.meshgrid(
            side + offset[1] * spacing + constants.SAMPLE_CENTER, side + offset[0] * spacing, indexing="ij"
        )
    t = torch.linspace(constants.ORTHO_T_NEAR, constants.ORTHO_T_FAR, num_samples, device=device, dtype=dtype)
    z = constants.ORTHO_ORIGIN_Z - t
    grid = torch.stack(
        [
            x.reshape(-1, 1).expand(-1, num_samples),
            y.reshape(-1, 1).expand(-1, num_samples),
            z.expand(resolution * resolution, -1),
        ],
        dim=-1,
    )
    return grid.expand(batch, -1, -1, -1)


# ---------------------------------------------------------------------------------------------------------------------
# Face camera of the dual-camera scheme (AniPortraitGAN paper, section 3.4)
#
# A second camera rigidly attached to the posed head, "in the same local coordinate system as previous 3D-aware head
# GANs" (GRAM, AniFaceGAN). Those GANs look at the face centre from distance 1 with a 12 degree field of view and
# near/far 0.88/1.12 in exactly the normalised face frame the portrait frame is built from (constants.py: 1 canonical
# unit = SMPL_SCALE * FACE_RADIUS = 1.177 SMPL metres). At that distance the image is 2 tan(6 deg) = 0.21 canonical
# units (25 cm) wide at the face centre: a head of about 0.13 x 0.19 units fills most of the frame with some hair and
# background around it, like the FFHQ-style aligned face crops the paper trains D_face on. The camera's up vector is
# the head's up axis, so head roll is removed as an aligned crop removes it.

FACE_CAMERA_DISTANCE = 1.0  # canonical units from the face centre (GRAM / AniFaceGAN face camera radius)
FACE_CAMERA_FOV_DEGREES = 12.0  # full field of view (GRAM / AniFaceGAN)
FACE_RAY_START = 0.88  # near / far distances along unit rays (GRAM / AniFaceGAN): the face centre +- 0.12
FACE_RAY_END = 1.12
# The procedural rig's head joint J15 sits this far from the neck joint J12 in SMPL metres (models/rig.py _Anatomy).
RIG_HEAD_ABOVE_NECK_M = (0.0, 0.080, 0.022)
# Face centre minus head joint J15, in canonical units and the head's mean-pose frame: the face centre is the
# canonical origin of the face frame (body.to_face_frame), J15 of the nominal procedural rig (zero betas) is at
# (RIG_HEAD_ABOVE_NECK_M / SMPL_SCALE - (0, FACE_TY, FACE_TZ)) / FACE_RADIUS = (0, -0.0600, -0.0772), so the offset
# is minus that. Pass a per-sample offset for other shapes (betas that scale the head) or for real SMPL.
FACE_CENTER_OFFSET = (
    0.0,
    (constants.FACE_TY - RIG_HEAD_ABOVE_NECK_M[1] / constants.SMPL_SCALE) / constants.FACE_RADIUS,
    (constants.FACE_TZ - RIG_HEAD_ABOVE_NECK_M[2] / constants.SMPL_SCALE) / constants.FACE_RADIUS,
)
FRONTAL_VIEW = (math.pi / 2, math.pi / 2)  # (pitch, yaw) of a view straight at the face, portrait convention


def posed_head_transform(pose: torch.Tensor, joints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The posed head joint's rigid transform from the canonical mean pose, as in the release's ``run_model_lbs``.

    Forward kinematics of the neck J12 and head J15 rotations (their ancestors are identity in the release's pose):
    ``R = R(E_12) R(E_15)`` and ``p = J12 + R(E_12) (J15 - J12)``. A point x of the head in the mean-pose canonical
    frame moves to ``R (x - J15) + p``.

    Args:
        pose: [B, 6, 3] ZYX Euler offsets of joints 12..17 from the mean pose (the pose label).
        joints: [B, 24, 3] mean-pose (canonical) joints in canonical units, e.g. ``BodyModel.joints(betas, 0 pose)``.

    Returns:
        rotation [B, 3, 3] and position [B, 3] (the posed J15), in ``joints.dtype``.
    """

    pose = pose.to(joints.dtype)
    neck, head = euler_zyx_to_matrix(pose[:, 0]), euler_zyx_to_matrix(pose[:, 3])
    neck_joint, head_joint = joints[:, 12], joints[:, 15]
    position = neck_joint + torch.einsum("bij,bj->bi", neck, head_joint - neck_joint)
    return neck @ head, position


def _split_head_transform(head_transform) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(head_transform, torch.Tensor):
        if head_transform.ndim != 3 or head_transform.shape[1:] not in ((4, 4), (3, 4)):
            raise ValueError(f"head_transform must be [B, 4, 4] or [B, 3, 4], got {list(head_transform.shape)}")
        return head_transform[:, :3, :3], head_transform[:, :3, 3]
    rotation, position = head_transform
    if rotation.ndim != 3 or rotation.shape[1:] != (3, 3) or position.shape != (rotation.shape[0], 3):
        raise ValueError(
            f"head_transform must be (rotation [B, 3, 3], position [B, 3]), got {list(rotation.shape)}, "
            f"{list(position.shape)}"
        )
    return rotation, position


def face_center(head_transform, center_offset=FACE_CENTER_OFFSET) -> torch.Tensor:
    """World position [B, 3] of the face centre: ``position + rotation @ center_offset`` ([3] or [B, 3])."""
    rotation, position = _split_head_transform(head_transform)
    offset = torch.as_tensor(center_offset, dtype=rotation.dtype, device=rotation.device).expand_as(position)
    return position + torch.einsum("bij,bj->bi", rotation, offset)


def face_camera(
    head_transform,
    view_origin: torch.Tensor | None = None,
    *,
    view: torch.Tensor | None = None,
    distance: float = FACE_CAMERA_DISTANCE,
    center_offset=FACE_CENTER_OFFSET,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The face camera attached to the posed head: origins [B, 3] and camera-to-world rotations [B, 3, 3].

    The camera sits ``distance`` from the face centre and looks at it along its -z axis; its rotation has the columns
    (right, up, backward) as :func:`look_at_rotation`, with the head's up axis as the up vector. Where it sits:

    - default: straight in front of the face (along the head's forward axis): at the mean pose the camera is at
      ``face centre + (0, 0, distance)`` with the rotation of the frontal portrait camera, and it follows the head;
    - ``view_origin`` [B, 3]: on the line from the face centre towards this world point, e.g. the portrait camera's
      centre, so the crop shows the face as that camera sees it (an aligned crop of the portrait);
    - ``view`` [B, 2]: (pitch, yaw) in the head's frame with the portrait convention (pi/2, pi/2 = frontal, a larger
      yaw moves the camera towards the head's -x).

    Args:
        head_transform: the posed head joint's rigid transform in the world (canonical portrait) frame, relative to
            the mean pose: a tuple (rotation [B, 3, 3], position [B, 3]) as :func:`posed_head_transform` returns, or a
            [B, 4, 4] / [B, 3, 4] matrix.
        center_offset: face centre minus head joint in the head's mean-pose frame, [3] or [B, 3].

    Example:
        >>> origin, rotation = face_camera(posed_head_transform(pose, body.joints(betas, torch.zeros_like(pose))))
    """
    if view_origin is not None and view is not None:
        raise ValueError("give view_origin or view, not both")
    rotation, _ = _split_head_transform(head_transform)
    center = face_center(head_transform, center_offset)
    if view_origin is not None:
        direction = F.normalize(view_origin.to(center.dtype) - center, dim=-1)
    else:
        local = torch.tensor((0.0, 0.0, 1.0), dtype=rotation.dtype, device=rotation.device).expand_as(center)
        if view is not None:
            local = camera_origin(view.to(rotation.dtype), 1.0)
        direction = torch.einsum("bij,bj->bi", rotation, local)
    origin = center + distance * direction
    forward = -direction
    left = F.normalize(torch.linalg.cross(rotation[:, :, 1], forward, dim=-1), dim=-1)
    up = F.normalize(torch.linalg.cross(forward, left, dim=-1), dim=-1)
    return origin, torch.stack([-left, up, -forward], dim=-1)


def face_rays(
    head_transform,
    resolution: int,
    num_samples: int,
    view_origin: torch.Tensor | None = None,
    *,
    view: torch.Tensor | None = None,
    distance: float = FACE_CAMERA_DISTANCE,
    fov_degrees: float = FACE_CAMERA_FOV_DEGREES,
    ray_start: float = FACE_RAY_START,
    ray_end: float = FACE_RAY_END,
    center_offset=FACE_CENTER_OFFSET,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample points along the face camera's rays (see :func:`face_camera`), like :func:`portrait_rays`.

    Returns:
        points [B, F*F, S, 3] in world space at distances ``linspace(ray_start, ray_end, S)`` along unit rays (pixel
        layout of :func:`camera_directions`), and the camera origins [B, 3]. No origin offset: the face camera is
        placed in the world frame directly.
    """
    origin, rotation = face_camera(
        head_transform, view_origin, view=view, distance=distance, center_offset=center_offset
    )
    dirs_cam = camera_directions(resolution, fov_degrees, device=origin.device, dtype=origin.dtype)
    dirs = torch.einsum("bij,rj->bri", rotation, dirs_cam)
    t = torch.linspace(ray_start, ray_end, num_samples, device=origin.device, dtype=origin.dtype)
    points = origin[:, None, None, :] + t[None, None, :, None] * dirs[:, :, None, :]
    return points, origin
