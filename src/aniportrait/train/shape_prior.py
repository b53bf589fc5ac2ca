"""Warm-ups [ours] that give a short run a sensible start before the adversarial game.

Shape (stage 1, ``shape_prior_steps``): fit RadianceNet's density to the canonical body.

A randomly initialised RadianceNet fills the whole canonical box with a faint fog, and the discriminators first
have to carve a figure out of it: thousands of steps that a CPU run cannot afford. The warm-up is a geometric
initialisation in the spirit of SDF-sphere starts (StyleSDF, GRAM's SampleNet init): for ``shape_prior_steps``
steps, the alpha of the manifold textures is regressed onto the soft occupancy of the body model's canonical
(mean-pose, mean-shape) mesh, for random identities. Only the density path moves in practice; colour, the
manifolds and the deformation are left to the GAN. Occupancy works for any mesh (procedural rig or SMPL): a
point's signed distance is approximated by its offset from the nearest vertex along that vertex's normal.

Upsampling (stage 2, ``sr_prior_steps``): a randomly initialised super-resolution network outputs noise, so the
high-resolution discriminators would first have to teach it to upsample at all. The warm-up regresses its output
onto the x4 bilinear upsampling of the low-resolution RGBA textures; the GAN then adds detail.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# Width (canonical units) of the sigmoid that softens the occupancy edge: about a texel of the small config.
OCCUPANCY_SOFTNESS = 0.005
NEAREST_CHUNK = 4096  # query points per distance matrix (4096 x 6890 floats = 113 MB)
# Adam rates of the warm-ups (plain regressions, so larger than the GAN's).
SHAPE_PRIOR_LR = 1e-3
SR_PRIOR_LR = 3e-3


def vertex_normals(verts: Tensor, faces: Tensor) -> Tensor:
    """Area-weighted unit vertex normals [B, V, 3] of triangle meshes verts [B, V, 3], faces [F, 3] (outward if the
    faces wind counter-clockwise seen from outside, as SMPL's and the procedural rig's do)."""
    a, b, c = (verts[:, faces[:, k]] for k in range(3))
    face_normals = torch.cross(b - a, c - a, dim=-1)  # length = 2 x area
    normals = torch.zeros_like(verts)
    for k in range(3):
        normals.index_add_(1, faces[:, k], face_normals)
    return F.normalize(normals, dim=-1)


@torch.no_grad()
def canonical_occupancy(body, points: Tensor, betas: Tensor | None = None) -> Tensor:
    """Soft occupancy in [0, 1] of canonical points [B, P, 3] by the body's canonical mesh (1 inside).

    Args:
        body: a :class:`aniportrait.models.body.BodyModel`.
        points: canonical units, as the manifold textures' hits.
        betas: [B, 10] shape coefficients (default: mean shape).
    """
    B = points.shape[0]
    if betas is None:
        betas = points.new_zeros(B, 10)
    verts, _ = body._smpl(betas.to(body.mean_pose.dtype), body.mean_pose.expand(B, -1, -1, -1))
    faces = body.smpl_model.faces_tensor.long().to(points.device)
    verts = verts.to(points.dtype)
    normals = vertex_normals(verts, faces)
    signed = torch.empty(points.shape[:2], dtype=points.dtype, device=points.device)
    for start in range(0, points.shape[1], NEAREST_CHUNK):
        chunk = points[:, start : start + NEAREST_CHUNK]
        nearest = torch.cdist(chunk, verts).argmin(dim=-1)  # [B, p]
        v = torch.gather(verts, 1, nearest[..., None].expand(-1, -1, 3))
        n = torch.gather(normals, 1, nearest[..., None].expand(-1, -1, 3))
        signed[:, start : start + NEAREST_CHUNK] = ((chunk - v) * n).sum(-1)
    return torch.sigmoid(-signed / OCCUPANCY_SOFTNESS)


def fit_density_to_body(trainer, steps: int) -> list[float]:
    """Run the warm-up on ``trainer.G`` (stage 1, before step 0); returns the loss of each step.

    Each step draws identities from the dataset's labels (deterministically from the seed) and regresses the
    alpha of every valid texel of the low-resolution manifold textures onto the canonical occupancy of its point.
    Adam (``SHAPE_PRIOR_LR``) on RadianceNet only; the manifolds stay fixed, so the texel points
    and their occupancy are computed once.
    """
    from aniportrait import constants as K
    from aniportrait.ops import manifold_intersect
    from aniportrait.render.cameras import orthogonal_rays

    G, cfg = trainer.G, trainer.cfg
    res, S, M = G.config.lr_img_size, G.config.num_samples, G.config.num_manifolds
    device = G.levels.device
    with torch.no_grad():
        grid_w = orthogonal_rays(res, S, batch=1, device=device, dtype=torch.float32) * K.WARP_SCALE
        s = G.sample_net(grid_w)[..., 0]
        hits_w, valid = manifold_intersect(s, grid_w, G.levels, two_sided=True, min_step=K.MIN_STEP, impl=cfg.impl)
        hits = (hits_w / K.WARP_SCALE).reshape(1, res * res * M, 3)
        target = canonical_occupancy(trainer.body, hits)  # [1, P]
        valid = valid.reshape(1, -1).float()
    params = list(G.radiance_net.parameters())
    optimizer = torch.optim.Adam(params, lr=SHAPE_PRIOR_LR, betas=(0.9, 0.99))
    view_dir = torch.tensor([0.0, 0.0, -1.0], device=device).expand(cfg.batch_size, 1, 3)
    losses = []
    for step in range(steps):
        labels = trainer.fake_labels(step, 0x5A9E)
        freq, phase = G.radiance_net.mapping(torch.cat([labels["z_id"], labels["z_noise"]], dim=-1))
        points = hits.expand(cfg.batch_size, -1, -1)
        _, sigma, _ = G.radiance_net.features(points, freq, phase, view_dir)
        alpha = -torch.expm1(-K.DELTA_ALPHA * F.softplus(sigma[..., 0]))
        loss = (valid * (alpha - target).square()).sum() / (valid.sum() * cfg.batch_size)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def fit_sr_to_upsampling(trainer, steps: int) -> list[float]:
    """Run the stage-2 warm-up on ``trainer.G.sr_net`` (before step 0); returns the loss of each step.

    The targets are the frozen stage-1 textures of random identities, upsampled x4 (bilinear, clamped to [0, 1]).
    """
    G, cfg = trainer.G, trainer.cfg
    optimizer = torch.optim.Adam(G.sr_net.parameters(), lr=SR_PRIOR_LR, betas=(0.9, 0.99))
    losses = []
    for step in range(steps):
        labels = trainer.fake_labels(step, 0x5A9F)
        with torch.no_grad():
            lr_features, _ = G.manifold_textures(labels["z_id"], labels["z_noise"], impl=cfg.impl)
            target = F.interpolate(lr_features[:, :4], scale_factor=4, mode="bilinear", align_corners=False)
        style = G.sr_net.mapping(torch.cat([labels["z_id"], labels["z_noise"]], dim=-1))
        output = torch.sigmoid(G.sr_net(lr_features, style))
        loss = (output - target.clamp(0, 1)).square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses
