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

Drawn uniformly over the vertices, the surface points weigh each coefficient by the area it moves: the raised brows
move a quarter of the procedural face by at least half their largest displacement, the smile 1.2% of it, so the
smile's share of the squared error is a sixtieth of the brows' at equal coefficients, and DeformNet learns hardly any
of it (docs/training/README.md). With ``region_share`` a part of the surface points is drawn instead from each active
coefficient's own region: vertex v with probability ``sum_k |e_k| r_k(v) / sum_k |e_k|``, where ``r_k`` is the
coefficient's displacement size ``|B_k(v)|`` normalised to sum 1 over the vertices. Every coefficient then gets
points in proportion to its value, whatever the size of its region.

The 3DMM is registered per identity, to the face landmarks of the body at that identity's shape (betas): canonical
space follows each identity's body, and a registration at the mean shape would put the face's eyes and mouth
centimetres off on a long or short neck.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor

from aniportrait.models import face_registration
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

    @classmethod
    def on_body(cls, face: Face3DMM, body, bary: Tensor, *, mean_shape: bool) -> ExpressionTeacher:
        """The teacher of a generator on ``body``: the 3DMM registered to the body's 68 face landmarks (``bary``,
        their barycentrics on its mesh) at each identity's betas, or at the mean shape's for a generator whose
        canonical space is the mean shape's (``mean_shape``, ``GeneratorConfig.mean_shape_canonical``)."""
        landmarks = functools.partial(face_registration.smpl_landmarks, body, bary)
        if mean_shape:
            landmarks = functools.partial(_at_mean_shape, landmarks)
        return cls(face, landmarks)

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
        region_share: float = 0.0,
    ) -> tuple[Tensor, Tensor]:
        """Surface and far points [B, 2 * count, 3] with their targets [B, 2 * count, 3], canonical units.

        Args:
            labels: ``z_id`` [B, 80], ``betas`` [B, 10], ``expression`` [B, 64].
            far_points: [B, P, 3] candidate far points (P >= count; ``count`` of them are drawn).
            count: surface points, and far points, per image.
            generator: the CPU generator that draws the vertices, the jitter and the far points.
            max_distance: far points at least this far from the face get a zero target.
            region_share: the fraction of the surface points drawn from the active coefficients' regions
                (:meth:`region_weights`) rather than uniformly over the vertices (rounded to whole points).
        """
        registered = self.register(labels["betas"])
        z_id, expression = labels["z_id"], labels["expression"]
        vertices = registered.canonical_vertices(z_id, expression)  # [B, N, 3]
        offsets = -registered.canonical_expression_offsets(expression)  # [B, N, 3], the Eq. 10 target per vertex
        B, N, _ = vertices.shape
        device = vertices.device
        in_regions = round(region_share * count)
        pick = torch.randint(N, (B, count - in_regions), generator=generator)
        if in_regions:
            weights = self.region_weights(expression.cpu())
            pick = torch.cat([pick, torch.multinomial(weights, in_regions, replacement=True, generator=generator)], 1)
        pick = pick.to(device)
        jitter = SURFACE_JITTER * torch.randn(B, count, 3, generator=generator).to(device)
        surface = torch.gather(vertices, 1, pick[..., None].expand(-1, -1, 3)) + jitter
        surface_target = torch.gather(offsets, 1, pick[..., None].expand(-1, -1, 3))
        rows = torch.randperm(far_points.shape[1], generator=generator)[:count].to(far_points.device)
        far = far_points[:, rows].to(vertices.dtype)
        distance, far_target = nearest_vertex_targets(far, vertices, offsets)
        far_target = far_target * (distance < max_distance)[..., None].to(far_target.dtype)
        return torch.cat([surface, far], dim=1), torch.cat([surface_target, far_target], dim=1)

    @torch.no_grad()
    def region_weights(self, expression: Tensor) -> Tensor:
        """[B, N] weights (unnormalised probabilities) of the 3DMM's vertices for expressions [B, 64]: each
        coefficient's displacement size per vertex, normalised to sum 1, mixed by the coefficients' absolute values;
        uniform for a neutral expression."""
        size = self.face.exp_base.detach().cpu().unflatten(0, (-1, 3)).norm(dim=1).to(expression.dtype)  # [N, E]
        regions = size / size.sum(0).clamp_min(torch.finfo(size.dtype).tiny)
        weights = expression.abs() @ regions.T  # [B, N]
        neutral = weights.sum(-1, keepdim=True) <= 0
        return torch.where(neutral, torch.ones_like(weights), weights)


def nearest_vertex_targets(points: Tensor, vertices: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Distance [B, P] from each point [B, P, 3] to its nearest vertex [B, N, 3], and that vertex's target [B, P, 3]."""
    distance, nearest = torch.cdist(points, vertices).min(dim=-1)
    return distance, torch.gather(targets, 1, nearest[..., None].expand(-1, -1, targets.shape[-1]))


@torch.no_grad()
def follow_fractions(
    deform_net, teacher: ExpressionTeacher, z_id: Tensor, coefficients=range(4), values=(0.5, 1.0)
) -> dict[tuple[int, float], dict[str, float]]:
    """How much of the teacher's deformation ``deform_net`` follows, per expression coefficient and value.

    For each coefficient k and value v (all other coefficients 0), at the vertices of the 3DMM registered at the mean
    shape and placed at that expression: DeformNet's displacement change from the neutral expression projected onto
    the imitation target (``-B_exp e``) as a fraction of it (1 = all of it; 0 = none), and the mean cosine between the
    two, over the vertices where the target is at least half its largest. The identities are the rows of ``z_id``.

    Returns:
        ``{(k, v): {"fraction": ..., "cosine": ...}}``.
    """
    batch = z_id.shape[0]
    registered = teacher.register(torch.zeros(batch, 10, dtype=z_id.dtype))
    neutral = torch.zeros(batch, registered.face.exp_base.shape[1], dtype=z_id.dtype)
    out = {}
    for k in coefficients:
        for v in values:
            expression = neutral.clone()
            expression[:, k] = v
            at = registered.canonical_vertices(z_id, expression)
            target = -registered.canonical_expression_offsets(expression)
            change = deform_net(at, *deform_net.mapping(torch.cat([z_id, expression], dim=-1)))[1]
            change = change - deform_net(at, *deform_net.mapping(torch.cat([z_id, neutral], dim=-1)))[1]
            size = target.norm(dim=-1)
            where = size >= 0.5 * size.max()
            fraction = ((change * target).sum(-1)[where] / size[where] ** 2).mean()
            cosine = torch.nn.functional.cosine_similarity(change[where], target[where], dim=-1).mean()
            out[(k, v)] = {"fraction": float(fraction), "cosine": float(cosine)}
    return out


def _at_mean_shape(landmarks: Callable[[Tensor], Tensor], betas: Tensor) -> Tensor:
    """``landmarks`` of the mean shape for every row of ``betas`` (a picklable wrapper)."""
    return landmarks(torch.zeros_like(betas))
