"""Warm-ups [ours] that give a short run a sensible start before the adversarial game, and the shape regulariser.

Shape (stage 1, ``shape_prior_steps``): fit RadianceNet's density to the canonical body.
    A randomly initialised RadianceNet fills the canonical box with a faint fog, and the discriminators would first
    have to carve a figure out of it: thousands of steps that a CPU run cannot afford. For ``shape_prior_steps``
    steps RadianceNet's alpha at random points of the canonical box is regressed onto the soft occupancy of the body
    model's canonical (mean-pose, mean-shape) mesh, for random identities (a geometric start in the spirit of
    StyleSDF's sphere and GRAM's SampleNet init). With ``shape_prior_lambda`` > 0 the loss stays on in stage 1 as a
    regulariser against floaters, but only inside the body and beyond ``SHELL`` outside it, so that hair, clothes
    and the head's own shape remain the GAN's to make. A point's signed distance is its offset from the nearest
    vertex along that vertex's normal (a KD-tree query), which works for the procedural rig and for SMPL.

Expression deformation (stage 1, ``deform_prior_steps``): fit DeformNet to the 3DMM.
    Within the GAN the expression deformation gets most of its gradient from the adversarial and camera terms,
    and an untaught one moves the torso with the expression (docs/training/gradient_balance.md). The warm-up trains
    DeformNet alone on the deformation losses (3DMM imitation on the points of :mod:`aniportrait.train.imitation`,
    expression smoothness, minimal deformation) with Adam, so that the GAN starts from a deformation that acts on
    the face only.

Reconstruction (stage 1, ``recon_steps``): fit the generator to real images, an auto-decoder.
    A GAN on a CPU budget leaves the discriminators at chance for long stretches (docs/training/README.md), and the
    generator learns the figure's layout, its colours and where each control acts only slowly. Every real image
    comes with its labels (identity, shape, expression, camera, pose), so the generator can also be taught
    directly: ``recon_images`` images are rendered with their own labels and compared with the image and its face
    crop (L1), with the deformation losses kept on so that the expression stays on the face. With
    ``recon_codes="prior"`` each render gets a fresh N(0, I) noise, as a render at inference does, so the generator
    must read each image from its labels: right where the identity label encodes the appearance (the synthetic
    world's does), and the way to seeds that differ as the data's identities do. With ``recon_codes="learned"``
    each image has its own learned noise code (the generator's ``z_noise``, as in GLO and DeepSDF's
    auto-decoders), which can carry what the labels do not, but also takes over what they do. The codes start as
    N(0, I) draws, or (``recon_code_init="pca"``) as the images' whitened principal components, so that they tell
    the images apart from the first step; a weak prior keeps them near N(0, I)'s scale, so that the GAN's (and a
    render's) N(0, I) noise lands among them; with ``recon_code_sphere`` they are kept on the sphere of radius
    sqrt(dim) where N(0, I) draws concentrate (GLO's constraint). They are dropped afterwards. Stage 2 can do the
    same after its upsampling warm-up (``sr_recon_steps``): the frozen stage-1 generator's textures, through
    super-resolution (the networks stage 2 trains), rendered at full resolution against the full-resolution images,
    with new codes. A ``field_hr_textures`` model has no stage 2: its full-size frames show the field through fine
    textures that the stage-1 portrait never reads. With ``recon_window`` each step also renders a random window of
    the full-size frame as a frame composites it and adds its L1 against that window of the image at full size
    (``recon_window_weight``).

Upsampling (stage 2, ``sr_prior_steps``): fit super-resolution to x4 upsampling.
    A randomly initialised super-resolution network outputs noise, so the high-resolution discriminators would first
    have to teach it to upsample at all. The warm-up regresses its output onto the x4 bilinear upsampling of the
    low-resolution RGBA textures; the reconstruction (above) or the GAN then adds detail.

Each fit takes a ``draw_labels(step) -> labels`` function (the trainer's label sampler) and is deterministic for it:
its step t depends only on (seed, t) and on what the fit updates (the networks it trains, its Adam states and the
reconstruction's learned codes). A :class:`WarmupProgress` saves those every few steps and hands them back to a
resumed fit, which then continues exactly as if it had not stopped.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree
from torch import Tensor

from aniportrait import constants
from aniportrait.errors import UserInputError
from aniportrait.kernels._registry import Impl
from aniportrait.models.generator import texture_alpha
from aniportrait.train import losses

# Width (canonical units) of the sigmoid that softens the occupancy edge: about a texel of the small config.
OCCUPANCY_SOFTNESS = 0.005
# The regulariser leaves out points outside the body closer than this to its surface (canonical units, ~5 cm).
SHELL = 0.04
# Adam settings of the warm-ups (plain regressions, so larger steps and a momentum the GAN does not use).
SHAPE_PRIOR_LR = 1e-3
DEFORM_PRIOR_LR = 1e-3
SR_PRIOR_LR = 3e-3
PCA_SIDE = 8  # side of the thumbnails whose principal components start the codes (recon_code_init="pca")
FIGURE_LEVEL = 0.97  # a pixel (in [-1, 1]) with any channel below this is figure, not the white background
RECON_CODE_PRIOR = 1e-3  # weight of the mean squared code: keeps the learned codes near N(0, I)'s scale
WARMUP_BETAS = (0.9, 0.99)
SHAPE_PRIOR_POINTS = 8192  # random canonical points per step of the warm-up
SHAPE_REGULARISER_POINTS = 1024  # and of the stage-1 regulariser (a seventh of a CPU step at 2048)
# Canonical region (lo, hi) per axis that the manifold textures reach: the texture box in x and y, the orthogonal
# rays' depth range in z.
BOX = (
    (-constants.SAMPLE_SCALE, constants.SAMPLE_SCALE),
    (constants.SAMPLE_CENTER - constants.SAMPLE_SCALE, constants.SAMPLE_CENTER + constants.SAMPLE_SCALE),
    (constants.ORTHO_ORIGIN_Z - constants.ORTHO_T_FAR, constants.ORTHO_ORIGIN_Z - constants.ORTHO_T_NEAR),
)

DrawLabels = Callable[[int], dict[str, Tensor]]
SaveProgress = Callable[[int, list[float], dict[str, torch.optim.Optimizer], dict[str, Tensor]], None]


class WarmupStateError(UserInputError):
    """A resumed warm-up's saved states do not fit the fit's optimisers or tensors."""


class WarmupProgress:
    """Where a fit starts and how it checkpoints on the way.

    A fit calls :meth:`begin` with its optimisers and learned tensors (before its first step) and :meth:`after` after
    each step. Every ``every`` steps but the last, ``save(steps done, losses so far, optimisers, tensors)`` is called
    (the trainer writes them into the run's state with the networks). A resumed fit gets a progress built from that
    save: :meth:`begin` loads the saved optimiser states and tensors into the new ones and returns the step to start
    at and the losses so far. ``on_step(steps done, losses)`` is called after every step (a progress bar). Without
    arguments it neither saves nor resumes.
    """

    def __init__(
        self,
        save: SaveProgress | None = None,
        every: int = 0,
        *,
        step: int = 0,
        losses: list[float] | None = None,
        optimizer_states: dict[str, dict] | None = None,
        tensors: dict[str, Tensor] | None = None,
        on_step: Callable[[int, list[float]], None] | None = None,
    ) -> None:
        self.save, self.every, self.step, self.on_step = save, every, step, on_step
        self.losses = list(losses or [])
        self.optimizer_states, self.saved_tensors = optimizer_states or {}, tensors or {}
        self._optimizers: dict[str, torch.optim.Optimizer] = {}
        self._tensors: dict[str, Tensor] = {}

    def begin(
        self, optimizers: dict[str, torch.optim.Optimizer], tensors: dict[str, Tensor] | None = None
    ) -> tuple[int, list[float]]:
        """Load a resumed fit's saved states into ``optimizers`` and ``tensors`` (in place); returns (first step, the
        losses of the steps before it). Raises ValueError if the saved states do not fit them."""
        self._optimizers, self._tensors = optimizers, tensors or {}
        if self.step:
            missing = sorted({*optimizers, *self._tensors} - {*self.optimizer_states, *self.saved_tensors})
            if missing or len(self.losses) != self.step:
                raise WarmupStateError(f"the saved warm-up lacks {', '.join(missing) or 'its losses'}")
            for name, optimizer in optimizers.items():
                try:
                    optimizer.load_state_dict(self.optimizer_states[name])
                except ValueError as err:  # another parameter layout
                    raise WarmupStateError(f"the saved warm-up's {name} does not fit ({err})") from None
            with torch.no_grad():
                for name, tensor in self._tensors.items():
                    saved = self.saved_tensors[name]
                    if saved.shape != tensor.shape:
                        raise WarmupStateError(f"the saved warm-up's {name} has shape {tuple(saved.shape)}")
                    tensor.copy_(saved)
        return self.step, list(self.losses)

    def after(self, done: int, steps: int, losses: list[float]) -> None:
        """Called with the number of steps ``done`` of ``steps``; saves every ``every`` steps but the last."""
        if self.on_step is not None:
            self.on_step(done, losses)
        if self.save is not None and self.every and done % self.every == 0 and done < steps:
            self.save(done, losses, self._optimizers, self._tensors)


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
    """The body's canonical mesh (mean pose, mean shape): vertices and unit normals [V, 3], for occupancy queries."""

    verts: Tensor
    normals: Tensor
    tree: cKDTree

    @classmethod
    @torch.no_grad()
    def of(cls, body) -> CanonicalBody:
        """From a :class:`aniportrait.models.body.BodyModel` (procedural rig or SMPL)."""
        dtype = body.mean_pose.dtype
        verts, _ = body.canonical_mesh(torch.zeros(1, 10, dtype=dtype, device=body.mean_pose.device))
        normals = vertex_normals(verts, body.smpl_model.faces_tensor.long().to(verts.device))
        verts, normals = verts[0].float(), normals[0].float()
        return cls(verts, normals, cKDTree(verts.cpu().double().numpy()))

    @torch.no_grad()
    def signed_distance(self, points: Tensor) -> Tensor:
        """Approximate signed distance (negative inside) of canonical points [..., 3]: the offset from the nearest
        vertex along its normal."""
        flat = points.reshape(-1, 3).float()
        _, nearest = self.tree.query(flat.cpu().double().numpy())
        nearest = torch.from_numpy(np.asarray(nearest, dtype=np.int64)).to(flat.device)
        verts, normals = self.verts.to(flat.device), self.normals.to(flat.device)
        signed = ((flat - verts[nearest]) * normals[nearest]).sum(-1)
        return signed.reshape(points.shape[:-1])

    @torch.no_grad()
    def occupancy(self, points: Tensor) -> Tensor:
        """Soft occupancy in [0, 1] (1 inside) of canonical points [..., 3]."""
        return torch.sigmoid(-self.signed_distance(points) / OCCUPANCY_SOFTNESS).to(points.dtype)


def box_points(n: int, generator: torch.Generator, device: torch.device | str = "cpu") -> Tensor:
    """``n`` uniform canonical points [n, 3] in the region the manifold textures cover (``BOX``)."""
    lo, hi = torch.tensor(BOX).T
    return (lo + (hi - lo) * torch.rand(n, 3, generator=generator)).to(device)


def density_prior_loss(
    G,
    body: CanonicalBody,
    labels: dict[str, Tensor],
    generator: torch.Generator,
    *,
    points: int = SHAPE_PRIOR_POINTS,
    shell: float = 0.0,
) -> Tensor:
    """Mean squared error between RadianceNet's alpha and the body's occupancy at ``points`` canonical points drawn
    with ``generator``, for each identity of ``labels``; points outside the body within ``shell`` of its surface are
    left out (0 for the warm-up, ``SHELL`` for the regulariser)."""
    xyz = box_points(points, generator, G.levels.device)
    freq, phase = G.radiance_net.mapping(G.latent(labels["z_id"], labels["z_noise"]))
    batch = freq.shape[0]
    view_dir = xyz.new_tensor([0.0, 0.0, -1.0]).expand(batch, 1, 3)
    _, sigma, _ = G.radiance_net.features(xyz.expand(batch, -1, -1), freq, phase, view_dir)
    signed = body.signed_distance(xyz)
    target = torch.sigmoid(-signed / OCCUPANCY_SOFTNESS)
    weight = ((signed <= 0) | (signed >= shell)).float()
    error = (texture_alpha(sigma[..., 0].float()) - target).square()
    return (error * weight).sum() / (batch * weight.sum()).clamp_min(1.0)


def fit_density_to_body(
    G, body: CanonicalBody, draw_labels: DrawLabels, steps: int, seed: int, progress: WarmupProgress | None = None
) -> list[float]:
    """The shape warm-up on ``G.radiance_net`` (stage 1, before step 0); returns the loss of each step.

    Each step draws identities with ``draw_labels(step)`` and ``SHAPE_PRIOR_POINTS`` canonical points
    (deterministically from ``seed``) and regresses RadianceNet's alpha there onto the body's occupancy, with Adam
    on RadianceNet only. ``progress`` checkpoints and resumes the fit (:class:`WarmupProgress`).
    """
    progress = progress or WarmupProgress()
    optimizer = torch.optim.Adam(G.radiance_net.parameters(), lr=SHAPE_PRIOR_LR, betas=WARMUP_BETAS)
    start, history = progress.begin({"adam": optimizer})
    for step in range(start, steps):
        points_rng = torch.Generator().manual_seed(seed * 100_003 + step)
        loss = density_prior_loss(G, body, draw_labels(step), points_rng)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append(float(loss.detach()))
        progress.after(step + 1, steps, history)
    return history


def deformation_losses(
    G, teacher, labels: dict[str, Tensor], far_points: Tensor, generator: torch.Generator, cfg
) -> dict[str, Tensor]:
    """The weighted expression-deformation terms (paper Eq. 10, 12, 13) on the teacher's points for ``labels``.

    Args:
        G: the generator (its ``deform_net`` is evaluated).
        teacher: an :class:`aniportrait.train.imitation.ExpressionTeacher`.
        far_points: [B, P, 3] candidate far points (portrait ray samples or canonical box points).
        cfg: the :class:`~aniportrait.train.config.TrainConfig` holding the weights.
    """
    points, target = teacher.samples(
        labels, far_points, cfg.imitation_points, generator, cfg.imitation_max_distance, cfg.imitation_region_share
    )
    points, target = points.to(far_points.device), target.to(far_points.device)
    freq, phase = G.deform_net.mapping(torch.cat([labels["z_id"], labels["expression"]], dim=-1))
    _, d = G.deform_net(points, freq, phase)
    shift = cfg.exp_smooth_sigma * torch.randn(points.shape, generator=generator).to(points.device)
    _, d_shifted = G.deform_net(points + shift, freq, phase)
    return {
        "imitation": cfg.imitation_lambda * losses.imitation_loss(d, target.to(d.dtype)),
        "exp_smooth": cfg.exp_smooth_lambda * losses.expression_smoothness(d, d_shifted),
        "minimal": cfg.minimal_lambda * losses.minimal_deformation(d),
    }


def fit_deformation_to_3dmm(
    G,
    teacher,
    draw_labels: DrawLabels,
    steps: int,
    seed: int,
    cfg,
    progress: WarmupProgress | None = None,
    lr: float = DEFORM_PRIOR_LR,
) -> list[float]:
    """The deformation warm-up on ``G.deform_net`` (stage 1, before step 0); returns the imitation loss per step.

    Far points are uniform points of the canonical box (the region every ray sample maps into). ``progress``
    checkpoints and resumes the fit (:class:`WarmupProgress`); ``lr`` is Adam's learning rate.
    """
    progress = progress or WarmupProgress()
    optimizer = torch.optim.Adam(G.deform_net.parameters(), lr=lr, betas=WARMUP_BETAS)
    start, history = progress.begin({"adam": optimizer})
    for step in range(start, steps):
        labels = draw_labels(step)
        rng = torch.Generator().manual_seed(seed * 100_019 + step)
        batch = labels["z_id"].shape[0]
        far = box_points(batch * cfg.imitation_points, rng, G.levels.device).reshape(batch, -1, 3)
        terms = deformation_losses(G, teacher, labels, far, rng, cfg)
        optimizer.zero_grad(set_to_none=True)
        sum(terms.values()).backward()
        optimizer.step()
        history.append(float(terms["imitation"].detach()) / max(cfg.imitation_lambda, 1e-30))
        progress.after(step + 1, steps, history)
    return history


def fit_generator_to_images(
    G,
    params: list[torch.nn.Parameter],
    render: Callable[[dict[str, Tensor]], dict[str, Tensor]],
    images: dict[str, Tensor],
    steps: int,
    seed: int,
    cfg,
    regularisers: Callable[[dict[str, Tensor], dict[str, Tensor], torch.Generator], dict[str, Tensor]],
    progress: WarmupProgress | None = None,
) -> list[float]:
    """The reconstruction warm-up on ``params`` (stage 1, before step 0); returns the L1 error of each step (the
    portrait's plus ``recon_face_weight`` times the face view's, plus ``recon_window_weight`` times the full-size
    window's with ``recon_window``, plus ``recon_hr_face_weight`` times the full-size face's; with
    ``recon_gradient_weight`` each view's error also holds its image-gradient term, :func:`image_error`).

    Args:
        G: the generator (for ``z_noise_dim``).
        params: the generator parameters the stage trains.
        render: ``labels -> render_train``'s output (``image`` and ``face`` in [-1, 1]).
        images: the images to fit and their labels, row i of each from one image: ``image`` [N, 3, P, P] and
            ``face`` [N, 3, F, F] at the renders' sizes, ``z_id`` [N, 80], ``betas``, ``expression``, ``camera``,
            ``pose``; with ``recon_window``, ``full`` [N, 3, 4P, 4P], the image at the full-size frame's side, and
            with ``recon_hr_face_weight``, ``hr_face`` [N, 3, Q, Q], the face at the side of stage 2's face view
            (any float dtype).
        cfg: the run's config (``batch_size``, ``recon_lr``, ``recon_face_weight``, ``recon_code_lr``,
            ``recon_window``, ``recon_window_weight``, ``recon_window_on``, ``recon_hr_face_weight``,
            ``recon_gradient_weight``, ``recon_ema``, ``recon_lr_schedule``, the deformation weights). With
            ``recon_window`` each step draws one window position for its batch (:func:`window_corner`) and passes it
            to ``render`` as ``labels["hr_window"]``; ``render`` must return it as ``window``. With
            ``recon_hr_face_weight`` it passes Q as ``labels["hr_face_size"]``, and ``render`` must return that face
            as ``hr_face``.
        regularisers: ``(labels, render output, generator) -> weighted terms`` kept on during the fit.
        progress: checkpoints and resumes the fit (:class:`WarmupProgress`; with learned codes they are saved too,
            with ``recon_ema`` the averages).

    With ``cfg.recon_ema`` (a decay in (0, 1)) an exponential moving average of ``params`` is kept from their values
    at the start, and the fit ends with ``params`` set to it rather than to the last step's values (Polyak averaging:
    at a constant learning rate the last iterate carries the noise of its last few batches). With
    ``cfg.recon_lr_schedule="cosine"`` the generator's learning rate falls from ``recon_lr`` towards 0 over the fit
    (:func:`scheduled_lr`; the codes keep ``recon_code_lr``).
    """
    progress = progress or WarmupProgress()
    n = images["image"].shape[0]
    device = images["image"].device
    dim = G.config.z_noise_dim
    learned = cfg.recon_codes == "learned"
    if learned:
        start = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed * 100_043 + 7))
        if cfg.recon_code_init == "pca":
            start = pca_codes(images, dim, start)
        if cfg.recon_code_sphere:
            start = onto_code_sphere(start)
        codes = torch.nn.Parameter(start.to(device))
        code_optimizer = torch.optim.Adam([codes], lr=cfg.recon_code_lr, betas=WARMUP_BETAS)
    optimizer = torch.optim.Adam(params, lr=cfg.recon_lr, betas=WARMUP_BETAS)
    optimizers, tensors = {"adam": optimizer}, {}
    if learned:
        optimizers["codes_adam"], tensors["codes"] = code_optimizer, codes
    averages = [p.detach().clone() for p in params] if cfg.recon_ema else []
    tensors.update({f"ema.{i}": average for i, average in enumerate(averages)})
    start, history = progress.begin(optimizers, tensors)
    label_keys = ("z_id", "betas", "expression", "camera", "pose")
    g = cfg.recon_gradient_weight
    for step in range(start, steps):
        rng = torch.Generator().manual_seed(seed * 100_057 + step)
        rows = torch.randint(n, (min(cfg.batch_size, n),), generator=rng).to(device)
        labels = {k: images[k][rows] for k in label_keys}
        # "prior": a fresh N(0, I) draw, the noise a render gets, so the image must be read from the labels.
        labels["z_noise"] = codes[rows] if learned else torch.randn(len(rows), dim, generator=rng).to(device)
        if cfg.texel_jitter:
            labels["texel_offset"] = (torch.rand(2, generator=rng) - 0.5).to(device)
        if cfg.recon_window:
            side = cfg.recon_window
            top, left = window_corner(images["full"][rows], side, cfg.recon_window_on, rng)
            labels["hr_window"] = (top, left, side)
        if cfg.recon_hr_face_weight:
            labels["hr_face_size"] = images["hr_face"].shape[-1]
        out = render(labels)
        error = image_error(out["image"], images["image"][rows], g)
        error = error + cfg.recon_face_weight * image_error(out["face"], images["face"][rows], g)
        if cfg.recon_window:
            target = images["full"][rows, :, top : top + side, left : left + side]
            error = error + cfg.recon_window_weight * image_error(out["window"], target, g)
        if cfg.recon_hr_face_weight:
            error = error + cfg.recon_hr_face_weight * image_error(out["hr_face"], images["hr_face"][rows], g)
        terms = regularisers(labels, out, rng)
        loss = error + sum(terms.values())
        if learned:
            loss = loss + RECON_CODE_PRIOR * codes[rows].square().mean()
            code_optimizer.zero_grad(set_to_none=True)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for group in optimizer.param_groups:
            group["lr"] = scheduled_lr(cfg.recon_lr, step, steps, cfg.recon_lr_schedule)
        optimizer.step()
        if averages:
            update_ema(averages, params, cfg.recon_ema)
        if learned:
            code_optimizer.step()
            if cfg.recon_code_sphere:
                with torch.no_grad():
                    codes[rows] = onto_code_sphere(codes[rows])
        history.append(float(error.detach()))
        progress.after(step + 1, steps, history)
    with torch.no_grad():
        for param, average in zip(params, averages):
            param.copy_(average)
    return history


def image_error(output: Tensor, target: Tensor, gradient_weight: float = 0.0) -> Tensor:
    """The fit's error of one view: the mean absolute error of ``output`` against ``target`` [B, C, H, W] (``target``
    in any float dtype), plus ``gradient_weight`` times the mean absolute error of their differences between
    neighbouring pixels (down the columns and along the rows, averaged). The second term is the image-gradient loss:
    a render that blurs an edge of the target pays it at every pixel across the edge, however few pixels the edge
    covers, while an error that is constant over a region pays nothing there."""
    diff = output - target.to(output.dtype)
    error = diff.abs().mean()
    if gradient_weight:
        down = (diff[..., 1:, :] - diff[..., :-1, :]).abs().mean()
        along = (diff[..., :, 1:] - diff[..., :, :-1]).abs().mean()
        error = error + gradient_weight * 0.5 * (down + along)
    return error


def scheduled_lr(base: float, step: int, steps: int, schedule: str) -> float:
    """The learning rate of step ``step`` (0-based) of ``steps``: ``base`` throughout ("constant"), or ``base`` at
    step 0 falling along a half cosine towards 0, which it would reach at step ``steps`` ("cosine")."""
    if schedule == "constant":
        return base
    if schedule == "cosine":
        return base * 0.5 * (1.0 + math.cos(math.pi * step / steps))
    raise ValueError(f"unknown learning-rate schedule {schedule!r}")


@torch.no_grad()
def update_ema(averages: list[Tensor], params: list[Tensor], decay: float) -> None:
    """One step of an exponential moving average: each of ``averages`` (in place) moves ``1 - decay`` of the way to
    its parameter in ``params``."""
    for average, param in zip(averages, params):
        average.lerp_(param.detach(), 1.0 - decay)


def window_corner(full: Tensor, side: int, on: str, rng: torch.Generator) -> tuple[int, int]:
    """The top-left corner (row, column) of a ``side`` x ``side`` window of a batch's full-size images ``full``
    [B, 3, S, S] (in [-1, 1] on a white background), drawn with ``rng``.

    ``on="frame"``: uniform over the frame's corners. ``on="figure"``: each corner drawn with probability
    proportional to the share of the batch's pixels inside its window that are not background (any channel below
    ``FIGURE_LEVEL``), so that windows of white background alone are never drawn unless the whole batch is white.
    """
    corners = full.shape[-1] - side + 1
    if on == "frame":
        top, left = torch.randint(corners, (2,), generator=rng).tolist()
        return top, left
    figure = (full.float() < FIGURE_LEVEL).any(dim=1).float().mean(dim=0)  # [S, S]
    share = F.avg_pool2d(figure[None, None], side, stride=1)[0, 0]  # [corners, corners]
    weights = share.flatten() + 1e-6  # an all-white batch: uniform
    index = int(torch.multinomial(weights, 1, generator=rng))
    return index // corners, index % corners


def onto_code_sphere(codes: Tensor) -> Tensor:
    """Rows [N, D] scaled to norm sqrt(D): the sphere near which N(0, I) draws in D dimensions concentrate (GLO's
    constraint on its codes), so that a render's random noise has the norm of the codes the generator was fitted to."""
    return codes * (math.sqrt(codes.shape[-1]) / codes.norm(dim=-1, keepdim=True).clamp_min(1e-12))


def pca_codes(images: dict[str, Tensor], dim: int, fill: Tensor) -> Tensor:
    """Starting codes [N, dim] that already tell the images apart: the whitened principal components of their
    ``PCA_SIDE``-pixel thumbnails (portrait and face crop), as GLO starts its codes.

    Column k is the images' coordinate on their k-th principal component, scaled to unit variance, so that the codes
    have N(0, I)'s first two moments and a random N(0, I) code reads as a random mix of the images' main modes of
    variation (colours of clothes, skin and hair first). Each component's sign is fixed (its largest loading
    positive), so the codes depend on the images only. Columns beyond the images' rank keep ``fill``'s values.
    """
    thumbs = [F.adaptive_avg_pool2d(images[key].float().cpu(), PCA_SIDE).flatten(1) for key in ("image", "face")]
    x = torch.cat(thumbs, dim=1).double()
    x = x - x.mean(dim=0)
    n = x.shape[0]
    if n < 2:
        return fill.clone()
    u, sv, vt = torch.linalg.svd(x, full_matrices=False)
    k = min(dim, int((sv > sv[0] * 1e-6).sum()))
    flip = torch.sign(vt[:k].gather(1, vt[:k].abs().argmax(dim=1, keepdim=True))).squeeze(1)
    codes = fill.clone()
    codes[:, :k] = (u[:, :k] * flip * math.sqrt(n - 1)).to(codes.dtype)
    return codes


def upsampling_loss(output: Tensor, target: Tensor) -> Tensor:
    """Error of RGBA textures [N, 4, H, W]: alpha everywhere, colour weighted by the target's alpha (most texels
    are empty, and an unweighted colour error lets the network settle for one mean colour where it shows)."""
    weight = target[:, 3:]
    colour = (weight * (output[:, :3] - target[:, :3]).square()).sum() / (3 * weight.sum()).clamp_min(1e-6)
    return colour + (output[:, 3] - target[:, 3]).square().mean()


def fit_sr_to_upsampling(
    G, draw_labels: DrawLabels, steps: int, impl: Impl = "auto", progress: WarmupProgress | None = None
) -> list[float]:
    """The stage-2 warm-up on ``G.sr_net`` (before step 0); returns the loss of each step.

    The targets are the frozen stage-1 textures of random identities, upsampled x4 (bilinear, clamped to [0, 1]).
    ``progress`` checkpoints and resumes the fit (:class:`WarmupProgress`).
    """
    progress = progress or WarmupProgress()
    optimizer = torch.optim.Adam(G.sr_net.parameters(), lr=SR_PRIOR_LR, betas=WARMUP_BETAS)
    start, history = progress.begin({"adam": optimizer})
    for step in range(start, steps):
        labels = draw_labels(step)
        with torch.no_grad():
            lr_features, _ = G.manifold_textures(labels["z_id"], labels["z_noise"], impl=impl)
            target = F.interpolate(lr_features[:, :4], scale_factor=4, mode="bilinear", align_corners=False)
        style = G.sr_net.mapping(G.latent(labels["z_id"], labels["z_noise"]))
        output = torch.sigmoid(G.sr_net(lr_features, style))
        loss = upsampling_loss(output, target.clamp(0, 1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append(float(loss.detach()))
        progress.after(step + 1, steps, history)
    return history
