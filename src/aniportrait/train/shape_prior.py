"""Warm-ups [ours] that give a short run a sensible start before the adversarial game.

Shape (stage 1, ``shape_prior_steps``): fit RadianceNet's density to the canonical body.

A randomly initialised RadianceNet fills the whole canonical box with a faint fog, and the discriminators first
have to carve a figure out of it: thousands of steps that a CPU run cannot afford. The warm-up is a geometric
initialisation in the spirit of SDF-sphere starts (StyleSDF, GRAM's SampleNet init): for ``shape_prior_steps``
steps, RadianceNet's alpha at random points of the canonical box is regressed onto the soft occupancy of the body
model's canonical (mean-pose, mean-shape) mesh, for random identities. Colour, the manifolds and the deformation
are left to the GAN. With ``shape_prior_lambda`` > 0 the same loss stays on as a stage-1 regulariser: it keeps the
adversarial game from growing floaters and losing the silhouette in a run too short to correct them (it also
discourages volume beyond the body, such as hair, which the GAN must then earn). Occupancy works for any mesh
(procedural rig or SMPL): a point's signed distance is approximated by its offset from the nearest vertex along
that vertex's normal.

Upsampling (stage 2, ``sr_prior_steps``): a randomly initialised super-resolution network outputs noise, so the
high-resolution discriminators would first have to teach it to upsample at all. The warm-up regresses its output
onto the x4 bilinear upsampling of the low-resolution RGBA textures; the GAN then adds detail.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from aniportrait import constants as K
from aniportrait.models.generator import texture_alpha

# Width (canonical units) of the sigmoid that softens the occupancy edge: about a texel of the small config.
OCCUPANCY_SOFTNESS = 0.005
NEAREST_CHUNK = 4096  # query points per distance matrix (4096 x 6890 floats = 113 MB)
# Adam rates of the warm-ups (plain regressions, so larger than the GAN's).
SHAPE_PRIOR_LR = 1e-3
SR_PRIOR_LR = 3e-3
SHAPE_PRIOR_POINTS = 8192  # random canonical points per step
# Canonical region (lo, hi) per axis that the manifold textures reach: the texture box in x and y, the orthogonal
# rays' depth range in z.
BOX = (
    (-K.SAMPLE_SCALE, K.SAMPLE_SCALE),
    (K.SAMPLE_CENTER - K.SAMPLE_SCALE, K.SAMPLE_CENTER + K.SAMPLE_SCALE),
    (K.ORTHO_ORIGIN_Z - K.ORTHO_T_FAR, K.ORTHO_ORIGIN_Z - K.ORTHO_T_NEAR),
)


def vertex_normals(verts: Tensor, faces: Tensor) -> Tensor:
    """Area-weighted unit vertex normals [B, V, 3] of triangle meshes verts [B, V, 3], faces [F, 3] (outward if the
    faces wind counter-clockwise seen from outside, as SMPL's and the procedural rig's do)."""
    a, b, c = (verts[:, faces[:, k]] for k in range(3))
    face_normals = torch.cross(b - a, c - a, dim=-1)  # length = 2 x area
    normals = torch.zeros_like(verts)
    for k in range(3):
        normals.index_add_(1, faces[:, k], face_normals)
    return F.normalize(normals, dim=-1)


@dataclass(frozen=True)
class CanonicalBody:
    """The body's canonical mesh (mean pose, mean shape), vertices and unit normals [V, 3], for occupancy queries."""

    verts: Tensor
    normals: Tensor

    @classmethod
    @torch.no_grad()
    def of(cls, body) -> CanonicalBody:
        """From a :class:`aniportrait.models.body.BodyModel` (procedural rig or SMPL)."""
        dtype = body.mean_pose.dtype
        verts, _ = body._smpl(torch.zeros(1, 10, dtype=dtype, device=body.mean_pose.device), body.mean_pose[None])
        normals = vertex_normals(verts, body.smpl_model.faces_tensor.long().to(verts.device))
        return cls(verts[0].float(), normals[0].float())

    @torch.no_grad()
    def occupancy(self, points: Tensor) -> Tensor:
        """Soft occupancy in [0, 1] (1 inside) of canonical points [..., 3]."""
        flat = points.reshape(-1, 3).float()
        signed = torch.empty(len(flat), device=flat.device)
        for start in range(0, len(flat), NEAREST_CHUNK):
            chunk = flat[start : start + NEAREST_CHUNK]
            nearest = torch.cdist(chunk, self.verts).argmin(dim=-1)
            signed[start : start + NEAREST_CHUNK] = ((chunk - self.verts[nearest]) * self.normals[nearest]).sum(-1)
        return torch.sigmoid(-signed / OCCUPANCY_SOFTNESS).reshape(points.shape[:-1]).to(points.dtype)


def box_points(n: int, generator: torch.Generator, device: torch.device | str = "cpu") -> Tensor:
    """``n`` uniform canonical points [n, 3] in the region the manifold textures cover (``BOX``)."""
    lo, hi = torch.tensor(BOX).T
    return (lo + (hi - lo) * torch.rand(n, 3, generator=generator)).to(device)


def density_prior_loss(G, body: CanonicalBody, labels: dict[str, Tensor], generator: torch.Generator) -> Tensor:
    """Mean squared error between RadianceNet's alpha and the body's occupancy at ``SHAPE_PRIOR_POINTS`` canonical
    points drawn with ``generator``, for each identity of ``labels``: the warm-up's loss, and the optional
    regulariser ``shape_prior_lambda`` of stage 1."""
    points = box_points(SHAPE_PRIOR_POINTS, generator, G.levels.device)
    freq, phase = G.radiance_net.mapping(torch.cat([labels["z_id"], labels["z_noise"]], dim=-1))
    batch = freq.shape[0]
    view_dir = points.new_tensor([0.0, 0.0, -1.0]).expand(batch, 1, 3)
    _, sigma, _ = G.radiance_net.features(points.expand(batch, -1, -1), freq, phase, view_dir)
    return (texture_alpha(sigma[..., 0].float()) - body.occupancy(points)).square().mean()


def fit_density_to_body(trainer, steps: int) -> list[float]:
    """Run the warm-up on ``trainer.G`` (stage 1, before step 0); returns the loss of each step.

    Each step draws identities from the dataset's labels and ``SHAPE_PRIOR_POINTS`` canonical points
    (deterministically from the seed) and regresses RadianceNet's alpha there onto the body's occupancy, with Adam
    (``SHAPE_PRIOR_LR``) on RadianceNet only.
    """
    G, cfg = trainer.G, trainer.cfg
    optimizer = torch.optim.Adam(G.radiance_net.parameters(), lr=SHAPE_PRIOR_LR, betas=(0.9, 0.99))
    losses = []
    for step in range(steps):
        labels = trainer.fake_labels(step, 0x5A9E)
        points_rng = torch.Generator().manual_seed(cfg.seed * 100_003 + step)
        loss = density_prior_loss(G, trainer.canonical_body, labels, points_rng)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def upsampling_loss(output: Tensor, target: Tensor) -> Tensor:
    """Error of RGBA textures [N, 4, H, W]: alpha everywhere, colour weighted by the target's alpha (most texels
    are empty, and an unweighted colour error lets the network settle for one mean colour where it shows)."""
    weight = target[:, 3:]
    colour = (weight * (output[:, :3] - target[:, :3]).square()).sum() / (3 * weight.sum()).clamp_min(1e-6)
    return colour + (output[:, 3] - target[:, 3]).square().mean()


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
        loss = upsampling_loss(output, target.clamp(0, 1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses
