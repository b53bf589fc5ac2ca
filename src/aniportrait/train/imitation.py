"""The 3DMM as the teacher of the expression deformation (paper Eq. 10): sample points and their targets.

DeformNet maps a neutral-pose point x^p (with expression) to the canonical, neutral-expression space; Eq. 10 asks its
displacement to equal the 3DMM's inverse expression displacement ``-B_exp z_exp`` at the nearest point of the 3DMM
face ``S(z_id, z_exp)`` placed in that space.

Which points carry the loss matters more than its weight: the ray samples of a portrait lie mostly in empty space,
and only a few dozen of 4,096 fall within a centimetre of the face (docs/training/gradient_balance.md). So each image
contributes two sets of ``n`` points:

- surface points: vertices of the expressive 3DMM face, jittered by ``SURFACE_JITTER``, with their own vertex's
  target: they teach the deformation where it must act;
- far points: the caller's points (portrait ray samples, or uniform points of the canonical box), whose target is
  the nearest vertex's within ``max_distance`` and zero beyond: they teach it to leave the torso, hair and the rest
  of the head alone.

The 3DMM is registered per identity, to the face landmarks of the body at that identity's shape (betas): canonical
space follows each identity's body, and a registration at the mean shape would put the face's eyes and mouth
centimetres off on a long or short neck.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from aniportrait.models.face3dmm import Face3DMM
from aniportrait.models.face_registration import RegisteredFace

# Std of the jitter added to the 3DMM's vertices, canonical units (about 3.5 mm): samples a thin shell around the
# surface, where ray samples near the face lie.
SURFACE_JITTER = 0.003


class ExpressionTeacher:
    """Points near the 3DMM face and their Eq. 10 targets, for a batch of identities and expressions.

    Args:
        face: the 3DMM (procedural or BFM).
        body_landmarks: ``betas [B, 10] -> [B, 68, 3]`` canonical face landmarks of the body at those shapes (for
            example ``functools.partial(smpl_landmarks, body, bary)``).
    """

    def __init__(self, face: Face3DMM, body_landmarks: Callable[[Tensor], Tensor]) -> None:
        self.face = face
        self.body_landmarks = body_landmarks

    def to(self, device) -> ExpressionTeacher:
        self.face = self.face.to(device)
        return self

    @torch.no_grad()
    def register(self, betas: Tensor) -> RegisteredFace:
        """The 3DMM registered to each identity's face landmarks: a per-identity :class:`RegisteredFace`."""
        landmarks = self.body_landmarks(betas.to(self.face.mean_shape.dtype))
        return RegisteredFace.from_body_landmarks(self.face, landmarks)

    @torch.no_grad()
    def samples(
        self,
        labels: dict[str, Tensor],
        far_points: Tensor,
        count: int,
        generator: torch.Generator,
        max_distance: float,
    ) -> tuple[Tensor, Tensor]:
        """Surface and far points [B, 2 * count, 3] with their targets [B, 2 * count, 3], canonical units.

        Args:
            labels: ``z_id`` [B, 80], ``betas`` [B, 10], ``expression`` [B, 64].
            far_points: [B, P, 3] candidate far points (P >= count; ``count`` of them are drawn).
            count: surface points, and far points, per image.
            generator: the CPU generator that draws the vertices, the jitter and the far points.
            max_distance: far points at least this far from the face get a zero target.
        """
        registered = self.register(labels["betas"])
        z_id, expression = labels["z_id"], labels["expression"]
        vertices = registered.canonical_vertices(z_id, expression)  # [B, N, 3]
        offsets = -registered.canonical_expression_offsets(expression)  # [B, N, 3], the Eq. 10 target per vertex
        B, N, _ = vertices.shape
        device = vertices.device
        pick = torch.randint(N, (B, count), generator=generator).to(device)
        jitter = SURFACE_JITTER * torch.randn(B, count, 3, generator=generator).to(device)
        surface = torch.gather(vertices, 1, pick[..., None].expand(-1, -1, 3)) + jitter
        surface_target = torch.gather(offsets, 1, pick[..., None].expand(-1, -1, 3))
        rows = torch.randperm(far_points.shape[1], generator=generator)[:count].to(far_points.device)
        far = far_points[:, rows].to(vertices.dtype)
        distance, nearest = torch.cdist(far, vertices).min(dim=-1)
        far_target = torch.gather(offsets, 1, nearest[..., None].expand(-1, -1, 3))
        far_target = far_target * (distance < max_distance)[..., None].to(far_target.dtype)
        return torch.cat([surface, far], dim=1), torch.cat([surface_target, far_target], dim=1)
