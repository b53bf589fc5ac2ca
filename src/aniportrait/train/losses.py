"""Training losses of AniPortraitGAN: adversarial (non-saturating + R1 + camera regression) and the deformation
regularisers of paper Eq. 9-13. Each loss is a small pure function of tensors the training loop produces.

Sources: [P] the AniPortraitGAN paper (section 3.5 "Losses"); [G] GRAM, [H] GRAM-HD, [A] AniFaceGAN; [C] the
inference-only release; [ours] a choice of this project where nobody states a value. The weights of these terms
live in one place, :class:`aniportrait.train.config.TrainConfig`, and :mod:`aniportrait.train.objective` applies them.

Conventions:
* ``||v||^2`` of a vector-valued quantity is the squared Euclidean norm per point (summed over the last, coordinate
  dimension), then averaged over points and batch. So a loss of 1e-4 on displacements means an RMS displacement
  error of 1e-2 in the units the caller passes.
* Displacements: the release's DeformNet returns ``d`` and the renderer reads textures at ``x_can + d``
  (``get_s_and_intersections_target_lbs_with_deform`` in ``generators/siren.py``), so ``d`` is the rendered
  ``D_e(x^p) - x^p``. Pass ``d`` as returned and the 3DMM targets in the same (canonical) units. (The scalar field
  sees ``d / WARP_SCALE``: the release quirk documented in models/deformation.py.)

Shape letters: ``B`` batch, ``P`` points, ``E`` expression coefficients, ``L`` landmarks, ``C`` channels,
``D``, ``H``, ``W`` (samples, rows, columns) of the ray-aligned transform volume.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# The fixed average pooling of Eq. 11 uses the LbsSmoother's kernel support (D, H, W) = (5, 9, 9) [C].
POSE_POOL_DEPTH_KERNEL = 5
POSE_POOL_SPATIAL_KERNEL = 9


def _mean_sq_norm(diff: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean over all leading dims of ``||diff||^2`` over the last dim, restricted to ``mask`` (weights) if given."""
    sq = diff.pow(2).sum(dim=-1)
    if mask is None:
        return sq.mean()
    mask = mask.to(sq.dtype).expand_as(sq)
    return (sq * mask).sum() / mask.sum().clamp_min(1.0)


# -- adversarial ---------------------------------------------------------------------------------------------------


def d_loss_nonsaturating(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Discriminator's logistic loss: ``mean softplus(D(fake)) + mean softplus(-D(real))``.

    Source: [P §3.5] "non-saturating GAN loss"; the form is GRAM's / GRAM-HD's ``Gan3DProcess`` [G][H].

    Args:
        real_logits: [B] or [B, 1] logits of real images; fake_logits: [B'] or [B', 1] of generated ones.

    Returns:
        scalar.
    """
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def g_loss_nonsaturating(fake_logits: Tensor) -> Tensor:
    """Generator's non-saturating loss: ``mean softplus(-D(fake))`` = ``-mean log sigmoid(D(fake))`` [P][G].

    Args:
        fake_logits: [B] or [B, 1].

    Returns:
        scalar.
    """
    return F.softplus(-fake_logits).mean()


def r1_penalty(real_logits: Tensor, real_images: Tensor, gamma: float) -> Tensor:
    """R1 gradient penalty on reals: ``0.5 * gamma * mean_b ||d sum(D(x_real)) / d x_real[b]||^2``.

    Source: [P §3.5] "R1 [33]"; ``0.5 * r1_lambda * E||grad||^2`` every step as in GRAM / GRAM-HD [G][H]. The
    gradient is taken with ``create_graph=True`` so the penalty trains D. A D that ignores its input gives 0.

    Args:
        real_logits: [B] or [B, 1], computed from ``real_images``.
        real_images: [B, C, H, W] the exact tensor fed to D (``requires_grad_()`` set before the forward; for the
            torso discriminator, the crop).
        gamma: R1 weight (``LossWeights.r1_gamma``).

    Returns:
        scalar (already multiplied by ``0.5 * gamma``).
    """
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True, allow_unused=True)
    if grad is None:  # D does not depend on its input
        return real_logits.sum() * 0.0
    return 0.5 * gamma * grad.pow(2).reshape(grad.shape[0], -1).sum(dim=1).mean()


def camera_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Camera regression: ``mean((pred - target)^2)`` over batch and the (pitch, yaw) entries, radians^2.

    Source: GRAM's position loss (``F.mse_loss`` of D's pose outputs against the sampled camera for fakes and the
    dataset camera for reals) [G][A]; weight ``LossWeights.pos_lambda`` / ``real_pos_lambda`` (15). Not mentioned by
    [P]; kept from the predecessors.

    Args:
        pred: [B, 2] D's outputs ``[:, 1:]``; target: [B, 2] (pitch, yaw).

    Returns:
        scalar.
    """
    return F.mse_loss(pred, target)


# -- deformation and 3DMM losses [P §3.5, Eq. 9-13] ----------------------------------------------------------------


def inverse_expression_displacement(exp_basis: Tensor, z_exp: Tensor) -> Tensor:
    """The imitation target ``Delta x^p_ref = -B_exp z_exp (x^p_ref)`` [P Eq. 10].

    Args:
        exp_basis: [B, P, 3, E] or [P, 3, E], the 3DMM expression basis rows at each point's nearest mesh point
            ``x^p_ref`` (for a point on a triangle: the barycentric blend of its vertices' rows), in the units of
            the imitation loss (the 3DMM registered into the canonical frame).
        z_exp: [B, E] expression coefficients.

    Returns:
        [B, P, 3]: displacement taking the expressive 3DMM point back to its neutral position.
    """
    equation = "bpce,be->bpc" if exp_basis.dim() == 4 else "pce,be->bpc"
    return -torch.einsum(equation, exp_basis, z_exp)


def imitation_loss(displacement: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """3DMM imitation loss [P Eq. 10]: ``L_3DMM = || D_e(x^p) - x^p - Delta x^p_ref ||^2``.

    The expression deformation maps a point ``x^p`` (neutral pose, with expression) to canonical (neutral expression)
    space, so its displacement ``D_e(x^p) - x^p`` must equal the 3DMM's inverse expression displacement at the
    nearest mesh point, ``Delta x^p_ref = -B_exp z_exp(x^p_ref)`` (:func:`inverse_expression_displacement`).
    The training loop evaluates DeformNet at points ``x^p`` near the expressive 3DMM face (e.g. its vertices,
    registered into the pose-canonical frame, for which ``x^p_ref = x^p``; or ray samples with their nearest mesh
    vertex, masked by a distance threshold that [P] does not state). ``RegisteredFace.imitation_targets`` in
    models/face_registration.py returns ``(target, distance)`` for such points: pass
    ``mask = distance < IMITATION_MAX_DISTANCE``.

    No rgb/density imitation term: Eq. 10 constrains the deformation only (AniFaceGAN's 'rgb_lambda' /
    'density_lambda' curriculum names [A] have no released definition).

    Args:
        displacement: [B, P, 3] ``D_e(x^p) - x^p`` (DeformNet's ``d``, see the module docstring for units).
        target: [B, P, 3] ``Delta x^p_ref`` in the same units.
        mask: optional [B, P] bool/float weights (points near the face); the mean runs over the weighted points.

    Returns:
        scalar: mean over (masked) points of the squared Euclidean error; 0 iff displacement == target there.
    """
    return _mean_sq_norm(displacement - target, mask)


def expression_smoothness(displacement: Tensor, displacement_perturbed: Tensor, mask: Tensor | None = None) -> Tensor:
    """Expression-deformation smoothness [P Eq. 12]: ``L_exp_smooth = || D_e(x^p) - D_e(x^p + Delta) ||^2``.

    ``Delta`` is a small random perturbation of the point (std ``EXP_SMOOTH_SIGMA`` [ours]; [P] gives no size). We
    compare the displacements ``D_e(x) - x`` at ``x^p`` and ``x^p + Delta`` [ours: reading]: taken literally on the
    canonical coordinates, the difference would be ``Delta + d(x^p + Delta) - d(x^p)``, which is ``||Delta||^2`` for
    the identity deformation and is minimised by collapsing the field, not by a smooth one.

    Args:
        displacement: [B, P, 3] DeformNet's ``d`` at ``x^p``.
        displacement_perturbed: [B, P, 3] ``d`` at ``x^p + Delta`` (same z_id, z_exp).
        mask: optional [B, P] weights.

    Returns:
        scalar: mean squared Euclidean difference; 0 when the two displacements agree.
    """
    return _mean_sq_norm(displacement - displacement_perturbed, mask)


def minimal_deformation(displacement: Tensor, mask: Tensor | None = None) -> Tensor:
    """Minimal expression deformation [P Eq. 13]: ``L_exp_minimal = || x^p - D_e(x^p) ||^2 = mean ||d||^2``.

    Args:
        displacement: [B, P, 3] (or [B, R, S, 3]) DeformNet's ``d``.
        mask: optional weights over the leading dims.

    Returns:
        scalar: 0 at d = 0, growing quadratically with |d|.
    """
    return _mean_sq_norm(displacement, mask)


def fixed_average_pool(
    raw_transforms: Tensor,
    size: tuple[int, int, int] | torch.Size,
    depth_kernel: int = POSE_POOL_DEPTH_KERNEL,
    spatial_kernel: int = POSE_POOL_SPATIAL_KERNEL,
) -> Tensor:
    """``AvgPool(T)`` of Eq. 11: D_p's own pipeline with its learnable kernels replaced by fixed uniform ones.

    ``box(upsample(box(T)))``: ``box`` is a stride-1 average over a (depth_kernel, spatial_kernel, spatial_kernel)
    window with reflect padding (the LbsSmoother's padding), ``upsample`` is trilinear (align_corners=False) from the
    raw grid to ``size`` (x2 in the release: the raw nearest-vertex transforms are computed on every second row,
    column and sample). This equals the LbsSmoother at its initialisation (kernels 1/405, renormalised), so Eq. 11
    starts at 0 and penalises the smoother's drift from a plain average.

    Args:
        raw_transforms: [B, C, D', H', W'] raw nearest-vertex inverse-LBS matrices (C = 16 row-major entries).
        size: (D, H, W) of the smoothed volume (each a multiple of the raw size; equal sizes skip the upsampling).
        depth_kernel, spatial_kernel: odd window sizes along D and along H, W.

    Returns:
        [B, C, D, H, W].
    """
    pad_d, pad_s = depth_kernel // 2, spatial_kernel // 2
    window = (depth_kernel, spatial_kernel, spatial_kernel)

    def box(x: Tensor) -> Tensor:
        x = F.pad(x, (pad_s, pad_s, pad_s, pad_s, pad_d, pad_d), mode="reflect")
        return F.avg_pool3d(x, window, stride=1)

    x = box(raw_transforms)
    if tuple(x.shape[2:]) != tuple(size):
        x = F.interpolate(x, size=tuple(size), mode="trilinear", align_corners=False)
    return box(x)


def pose_deformation_smoothness(
    smoothed_transforms: Tensor,
    raw_transforms: Tensor,
    depth_kernel: int = POSE_POOL_DEPTH_KERNEL,
    spatial_kernel: int = POSE_POOL_SPATIAL_KERNEL,
) -> Tensor:
    """Pose-deformation smoothness [P Eq. 11]: ``L_pose_smooth = || D_p(T) - AvgPool(T) ||^2``.

    ``AvgPool`` is "a fixed average pooling operator" [P]; ours is :func:`fixed_average_pool` (the same windows,
    padding and upsampling as D_p = LbsSmoother, with uniform fixed weights). The pooled target is a constant
    (detached): the loss trains D_p only.

    Args:
        smoothed_transforms: [B, C, D, H, W] D_p's output (``canonical_samples(...)["smoothed"]``).
        raw_transforms: [B, C, D', H', W'] its input (``canonical_samples(...)["transforms"]``).
        depth_kernel, spatial_kernel: the pooling windows (use the smoother's kernel sizes).

    Returns:
        scalar: mean over voxels of the squared Frobenius norm of the 4x4 difference (sum over the C entries).
    """
    target = fixed_average_pool(raw_transforms, smoothed_transforms.shape[2:], depth_kernel, spatial_kernel).detach()
    return _mean_sq_norm((smoothed_transforms - target).movedim(1, -1))


def landmark_loss(pred_landmarks: Tensor, target_landmarks: Tensor, weights: Tensor | None = None) -> Tensor:
    """3D landmark loss [P Eq. 9]: ``L_lm = || f_lm(S(z_id, z_exp)) - f_lm(S(z_id_hat, z_exp_hat)) ||^2``.

    ``target_landmarks`` are the 3DMM landmarks of the input coefficients (z_id, z_exp); ``pred_landmarks`` those of
    the coefficients a face-coefficient estimator (Deep3DFaceRecon [P]) recovers from the generated face image, so
    the loss reaches the generator through the estimator. Used only when such an estimator is supplied.

    Args:
        pred_landmarks: [B, L, 3] (L = 68 presumably [P]); target_landmarks: [B, L, 3].
        weights: optional [L] or [B, L] per-landmark weights (none in [P]).

    Returns:
        scalar: (weighted) mean over landmarks of the squared Euclidean distance.
    """
    return _mean_sq_norm(pred_landmarks - target_landmarks, weights)
