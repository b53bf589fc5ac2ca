"""Every loss term of a training step with its weight, in one place (the role of EG3D's ``loss.py``).

The loop (:mod:`aniportrait.train.loop`) runs three phases per step on one batch of reals and one render of fakes;
each phase asks this module for its weighted terms and minimises their sum:

- ``D``: each discriminator's non-saturating loss on reals and fakes, weighted ``weight_whole / weight_face /
  weight_torso`` (0.1 / 1.0 / 0.5 [P]), and D_whole's camera regression on reals and fakes. The camera term is a
  D_whole term, so it carries D_whole's weight as well as ``pos_lambda``: GRAM's 15 was set for a single
  discriminator of weight 1, and unweighted it made D_whole a camera regressor with 10^4 times the gradient of its
  adversarial term (docs/training/gradient_balance.md).
- ``Dreg``: R1 on the reals of each discriminator, weighted like its adversarial term, every ``r1_every`` steps and
  multiplied by ``r1_every`` (StyleGAN2's lazy regularisation).
- ``G``: the non-saturating loss through the three discriminators, D_whole's camera regression, and in stage 1 the
  deformation terms (3DMM imitation Eq. 10, expression smoothness Eq. 12, minimal deformation Eq. 13, pose
  smoothness Eq. 11 when the smoother trains) and the optional shape regulariser; the landmark loss (Eq. 9) when a
  face-coefficient estimator is given.

Each method returns ``(terms, stats)``: the weighted loss terms (tensors, summed by the caller) and detached
statistics to log (mean logits of reals and fakes per discriminator).
"""

from __future__ import annotations

import torch
from torch import Tensor

from aniportrait.train import losses
from aniportrait.train.config import TrainConfig
from aniportrait.train.warmups import SHAPE_REGULARISER_POINTS, SHELL, deformation_losses, density_prior_loss

DISCRIMINATORS = ("whole", "face", "torso")


class Objective:
    """The loss terms of each phase.

    Args:
        cfg: the run's config (every weight).
        D: the :class:`~aniportrait.models.discriminator.MultiDiscriminator`.
        teacher: the :class:`~aniportrait.train.imitation.ExpressionTeacher` (stage 1).
        canonical_body: the :class:`~aniportrait.train.warmups.CanonicalBody` (shape regulariser).
        face_estimator: optional ``faces [B, 3, F, F] -> (id [B, 80], expression [B, 64])`` turning on Eq. 9.
    """

    def __init__(self, cfg: TrainConfig, D, teacher=None, canonical_body=None, face_estimator=None) -> None:
        self.cfg, self.D, self.teacher, self.canonical_body = cfg, D, teacher, canonical_body
        self.face_estimator = face_estimator
        self.weights = {"whole": cfg.weight_whole, "face": cfg.weight_face, "torso": cfg.weight_torso}

    def _camera(self, predicted: Tensor, target: Tensor, weight: float) -> Tensor:
        return self.weights["whole"] * weight * losses.camera_loss(predicted.float(), target.float())

    def discriminator(self, real: dict[str, Tensor], fake: dict[str, Tensor]) -> tuple[dict, dict]:
        """Phase ``D``: reals (``image``, ``face``, ``camera``) against detached fakes (``image``, ``face``,
        ``camera`` = their sampled cameras)."""
        real_out = self.D(real["image"], real["face"])
        fake_out = self.D(fake["image"].detach().float(), fake["face"].detach().float())
        terms = {
            f"d_{k}": self.weights[k]
            * losses.d_loss_nonsaturating(real_out[k][:, 0].float(), fake_out[k][:, 0].float())
            for k in DISCRIMINATORS
        }
        terms["d_camera"] = self._camera(real_out["whole"][:, 1:3], real["camera"], self.cfg.real_pos_lambda)
        terms["d_camera"] = terms["d_camera"] + self._camera(
            fake_out["whole"][:, 1:3], fake["camera"], self.cfg.pos_lambda
        )
        stats = {}
        for k in DISCRIMINATORS:
            stats[f"logit_real_{k}"] = float(real_out[k][:, 0].detach().float().mean())
            stats[f"logit_fake_{k}"] = float(fake_out[k][:, 0].detach().float().mean())
        return terms, stats

    def discriminator_reg(self, real: dict[str, Tensor]) -> tuple[dict, dict]:
        """Phase ``Dreg``: lazy R1 on the reals of each discriminator."""
        inputs = {k: v.detach().requires_grad_(True) for k, v in self.D.inputs(real["image"], real["face"]).items()}
        out = self.D.judge(inputs)
        gamma = self.cfg.r1_gamma * self.cfg.r1_every
        r1 = sum(self.weights[k] * losses.r1_penalty(out[k][:, 0].float(), inputs[k], gamma) for k in DISCRIMINATORS)
        return {"d_r1": r1}, {}

    def generator(self, G, fake: dict[str, Tensor], labels: dict[str, Tensor], rng: torch.Generator):
        """Phase ``G``: the fakes (with their graph) through the discriminators, and the generator's regularisers.

        Args:
            G: the generator being trained.
            fake: :meth:`~aniportrait.models.generator.AniPortraitGenerator.render_train`'s output.
            labels: the fakes' labels (``z_id``, ``z_noise``, ``betas``, ``expression``, ``camera``, ``pose``).
            rng: CPU generator for the points the regularisers draw.
        """
        cfg = self.cfg
        judged = self.D(fake["image"].float(), fake["face"].float())
        terms = {
            f"g_{k}": self.weights[k] * losses.g_loss_nonsaturating(judged[k][:, 0].float()) for k in DISCRIMINATORS
        }
        terms["g_camera"] = self._camera(judged["whole"][:, 1:3], labels["camera"], cfg.pos_lambda)
        if cfg.stage == 1:
            far = fake["x"].flatten(1, 2).detach()  # the portrait's canonical ray samples [B, R * S, 3]
            terms.update(deformation_losses(G, self.teacher, labels, far, rng, cfg))
            if cfg.train_smoother and cfg.pose_smooth_lambda:
                terms["pose_smooth"] = cfg.pose_smooth_lambda * losses.pose_deformation_smoothness(
                    fake["smoothed"].float(), fake["transforms"].float()
                )
            if cfg.shape_prior_lambda:
                shape = density_prior_loss(
                    G, self.canonical_body, labels, rng, points=SHAPE_REGULARISER_POINTS, shell=SHELL
                )
                terms["shape"] = cfg.shape_prior_lambda * shape
        if self.face_estimator is not None:
            # Eq. 9: landmarks of the 3DMM from the sampled coefficients vs from those estimated on the render.
            est_id, est_exp = self.face_estimator(fake["face"].float())
            registered = self.teacher.register(labels["betas"])
            target = registered.canonical_landmarks(labels["z_id"], labels["expression"])
            terms["landmark"] = cfg.landmark_lambda * losses.landmark_loss(
                registered.canonical_landmarks(est_id, est_exp), target
            )
        return terms, {}
