"""The training loop (paper section 3): dual-camera rendering, three discriminators, every loss, two stages.

One step = a discriminator step then a generator step on one batch:

- D: non-saturating loss on real and fake portraits, faces and torsos (weights 0.1 / 1.0 / 0.5), R1 on the reals,
  camera regression by D_whole on reals and fakes;
- G: non-saturating loss through the three discriminators, camera regression, and the deformation losses of the
  paper: 3DMM imitation (Eq. 10), expression smoothness (Eq. 12), minimal deformation (Eq. 13) and pose-deformation
  smoothness (Eq. 11), and the landmark loss (Eq. 9) when a face-coefficient estimator is supplied (none ships).

Stage 1 trains everything but super-resolution at the LR size; stage 2 trains super-resolution (and RadianceNet's
feature heads, as GRAM-HD) with high-resolution discriminators, everything else frozen. It starts from a stage-1 run
(``init_from``).

Determinism and resume: the real batch and the sampled labels/noise of step t depend only on (seed, t, rank), so
a resumed run continues exactly where it stopped. Multi-process training (torchrun) averages gradients with an
all-reduce after each backward, the scheme of StyleGAN2/EG3D: R1's double backward does not go through PyTorch's
DDP wrapper, whose reducer hooks would fire in the middle of it.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm.auto import tqdm

from aniportrait.checkpoint import save_generator
from aniportrait.config import get_config
from aniportrait.data.dataset import PortraitDataset
from aniportrait.data.samplers import LabelBank, id_bank, sample_camera_pose, sample_expression, sample_identity
from aniportrait.models import face3dmm
from aniportrait.models.body import BodyModel
from aniportrait.models.discriminator import DiscriminatorConfig, MultiDiscriminator
from aniportrait.models.face3dmm import RegisteredFace, rig_face_landmarks
from aniportrait.models.generator import AniPortraitGenerator, init_planar_manifolds
from aniportrait.train import losses as L
from aniportrait.train.config import D_MAX_CHANNELS_BY_MODEL, TrainConfig
from aniportrait.train.shape_prior import (
    CanonicalBody,
    density_prior_loss,
    fit_density_to_body,
    fit_sr_to_upsampling,
)
from aniportrait.train.state import load_training_state, save_training_state

STATE_FILE = "state.safetensors"
GENERATOR_FILE = "generator.safetensors"
CONFIG_FILE = "config.json"
LOG_FILE = "log.txt"
STATS_FILE = "stats.jsonl"
SAMPLES_DIR = "samples"
SAMPLE_SEEDS = 8  # identities in a sample grid
# Config values a resumed run may change (the schedule's length and the bookkeeping cadence).
RESUMABLE_CHANGES = ("total_steps", "log_every", "sample_every", "checkpoint_every", "impl")
ID_BANK_ROWS = 4096  # label rows a checkpoint carries (4096 x 90 float32 = 1.5 MB)
IMITATION_POINTS = 4096  # canonical samples per image for the imitation and smoothness losses


class TrainingError(RuntimeError):
    """Training cannot continue (a non-finite loss); the message says why and what was kept."""


class RunFolderError(ValueError):
    """The run folder or ``--init-from`` does not fit this run (bad input); the message says what to do."""


@dataclass
class World:
    """This process's place in a torchrun job (rank 0 of 1 without one)."""

    rank: int = 0
    size: int = 1

    @classmethod
    def from_env(cls) -> World:
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    def broadcast(self, module: torch.nn.Module) -> None:
        """Copy rank 0's parameters and buffers into every process's ``module``."""
        if self.size == 1:
            return
        with torch.no_grad():
            for tensor in [*module.parameters(), *module.buffers()]:
                dist.broadcast(tensor, src=0)

    def all_reduce_grads(self, params: list[torch.nn.Parameter]) -> None:
        """Average gradients over processes (one flat buffer, a deterministic reduction order per backend)."""
        if self.size == 1:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.size
        offset = 0
        for p, g in zip(params, grads):
            p.grad = flat[offset : offset + g.numel()].view_as(g).clone()
            offset += g.numel()


def _seeded(*keys: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(np.random.SeedSequence(list(keys)).generate_state(1)[0]))


class Trainer:
    """Owns the models, optimisers and run folder of one training run."""

    def __init__(
        self,
        config: TrainConfig,
        data_dir: str | os.PathLike,
        run_dir: str | os.PathLike,
        *,
        device: str | torch.device = "cpu",
        init_from: str | os.PathLike | None = None,
        face_estimator=None,
        smpl: str | os.PathLike | None = None,
        knn_index: str | os.PathLike | None = None,
        smpl_landmarks: str | os.PathLike | None = None,
        bfm: str | os.PathLike | None = None,
        progress: bool = True,
    ) -> None:
        """
        Args:
            smpl, knn_index, smpl_landmarks: train on SMPL (user-supplied ``SMPL_NEUTRAL.pkl``, the release's
                ``valid_smpl_knn_index.npy`` and its 68 face-landmark barycentrics ``[68, 4]``) instead of the
                built-in procedural rig; all three together.
            bfm: the Basel Face Model (``BFM_model_front.mat``) for the imitation loss instead of the procedural 3DMM.
            face_estimator: optional callable mapping face images [B, 3, F, F] in [-1, 1] to 3DMM coefficients
                (id [B, 80], expression [B, 64]), e.g. a Deep3DFaceRecon network; it turns on the landmark loss
                (paper Eq. 9). It must be differentiable w.r.t. its input and is not trained.
        """
        self.cfg, self.device, self.world, self.progress = config, torch.device(device), World.from_env(), progress
        self.face_estimator = face_estimator
        self.run_dir = Path(run_dir)
        self.dataset = PortraitDataset(data_dir)
        self.bank = LabelBank.from_dataset(self.dataset)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.G = AniPortraitGenerator(get_config(config.model)).to(self.device)
            init_planar_manifolds(self.G)
            self.face_size = config.face_size or self.G.default_face_size(config.stage)
            portrait = self.G.config.lr_img_size * (1 if config.stage == 1 else 4)
            self.D = MultiDiscriminator(
                DiscriminatorConfig(
                    whole_size=portrait,
                    face_size=self.face_size,
                    max_channels=config.d_max_channels or D_MAX_CHANNELS_BY_MODEL[config.model],
                    weight_whole=config.weight_whole,
                    weight_face=config.weight_face,
                    weight_torso=config.weight_torso,
                )
            ).to(self.device)
        self.portrait_size = portrait
        if (smpl is None) != (knn_index is None) or (smpl is None) != (smpl_landmarks is None):
            raise RunFolderError("--smpl, --knn-index and --smpl-landmarks go together")
        if smpl is None:
            self.body = BodyModel.procedural()
            body_landmarks = rig_face_landmarks(self.body)
        else:
            self.body = BodyModel.from_file(smpl, knn_index)
            body_landmarks = face3dmm.smpl_landmarks(self.body, face3dmm.load_landmark_bary(smpl_landmarks))
        self.body = self.body.to(self.device)
        face = face3dmm.build_face_model(bfm)
        self.face = RegisteredFace.from_body_landmarks(face, body_landmarks.cpu()).to(self.device)
        self.body_kind = "procedural" if smpl is None else "smpl"
        self.canonical_body = CanonicalBody.of(self.body)
        if init_from is not None:
            self._init_from(init_from)
        self.G.id_bank = self._checkpoint_id_bank()
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.g_params = self._trainable_generator_params()
        self.opt_G = torch.optim.Adam(
            self.g_params, lr=config.lr_g if config.stage == 1 else config.lr_sr, betas=(config.beta1, config.beta2)
        )
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=config.lr_d, betas=(config.beta1, config.beta2))
        self.amp = config.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.step = 0

    # -- set-up ---------------------------------------------------------------------------------------------------

    def _trainable_generator_params(self) -> list[torch.nn.Parameter]:
        """Stage 1: everything but super-resolution. Stage 2: super-resolution and RadianceNet's feature heads."""
        for p in self.G.parameters():
            p.requires_grad_(False)
        if self.cfg.stage == 1:
            modules = [self.G.radiance_net, self.G.sample_net, self.G.deform_net]
            modules += [self.G.smoother] if self.cfg.train_smoother else []
            params = [p for m in modules for p in m.parameters()]
        else:
            params = list(self.G.sr_net.parameters()) + list(self.G.radiance_net.output_feature.parameters())
        for p in params:
            p.requires_grad_(True)
        return params

    def _checkpoint_id_bank(self) -> torch.Tensor:
        """The dataset's [id, betas] label rows (at most ``ID_BANK_ROWS``, a seeded subset) that checkpoints carry."""
        bank = id_bank(self.bank).float().cpu()
        if len(bank) > ID_BANK_ROWS:
            bank = bank[torch.randperm(len(bank), generator=_seeded(self.cfg.seed, 0xBA4C))[:ID_BANK_ROWS]]
        return bank

    def _init_from(self, path: str | os.PathLike) -> None:
        from aniportrait.checkpoint import load_generator

        source, _, _ = load_generator(path, device=self.device)
        if source.config != self.G.config:
            raise RunFolderError(f"{path}: its generator config differs from --config {self.cfg.model}")
        self.G.load_state_dict(source.state_dict())

    # -- data -------------------------------------------------------------------------------------------------------

    def real_batch(self, step: int) -> dict[str, torch.Tensor]:
        """This rank's share of the global batch of ``step``: a fixed function of (seed, step)."""
        n, per_epoch = len(self.dataset), max(len(self.dataset) // (self.cfg.batch_size * self.world.size), 1)
        epoch, slot = divmod(step, per_epoch)
        order = torch.randperm(n, generator=_seeded(self.cfg.seed, epoch, 0x5EED))
        start = slot * self.cfg.batch_size * self.world.size + self.world.rank * self.cfg.batch_size
        idx = order[torch.arange(start, start + self.cfg.batch_size) % n]
        items = [self.dataset[int(i)] for i in idx]
        batch = {k: torch.stack([it[k] for it in items]).to(self.device) for k in ("image", "face", "camera")}
        batch["image"] = _resize(batch["image"], self.portrait_size)
        batch["face"] = _resize(batch["face"], self.face_size)
        return batch

    def fake_labels(self, step: int, tag: int) -> dict[str, torch.Tensor]:
        """Identity, noise, expression, camera and pose drawn from the dataset's labels for (seed, step, rank, tag)."""
        g = _seeded(self.cfg.seed, step, self.world.rank, tag)
        n = self.cfg.batch_size
        z_id, betas = sample_identity(self.bank, n, g)
        camera, pose = sample_camera_pose(self.bank, n, g, mode=self.cfg.pose_sampling)
        labels = {
            "z_id": z_id,
            "betas": betas,
            "z_noise": torch.randn(n, self.G.config.z_noise_dim, generator=g),
            "expression": sample_expression(self.bank, n, g),
            "camera": camera,
            "pose": pose,
        }
        return {k: v.to(self.device) for k, v in labels.items()}

    def render(self, G: AniPortraitGenerator, labels: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return G.render_train(
            self.body,
            labels["z_id"],
            labels["z_noise"],
            labels["betas"],
            labels["expression"],
            labels["camera"],
            labels["pose"],
            face_size=self.face_size,
            stage=self.cfg.stage,
            impl=self.cfg.impl,
        )

    # -- losses -----------------------------------------------------------------------------------------------------

    def _d_adversarial(self, real_out: dict[str, torch.Tensor], fake_out: dict[str, torch.Tensor]) -> torch.Tensor:
        weights = self.D.config.weights
        return sum(weights[k] * L.d_loss_nonsaturating(real_out[k][:, 0], fake_out[k][:, 0]) for k in real_out)

    def _g_adversarial(self, judged: dict[str, torch.Tensor]) -> torch.Tensor:
        weights = self.D.config.weights
        return sum(weights[k] * L.g_loss_nonsaturating(out[:, 0]) for k, out in judged.items())

    def _optimizer_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, params: list) -> None:
        """Backward (scaled under AMP), average gradients over ranks, clip, step."""
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.world.all_reduce_grads(params)
        self.scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        self.scaler.step(optimizer)
        self.scaler.update()

    def d_step(self, step: int) -> dict[str, float]:
        cfg = self.cfg
        real = self.real_batch(step)
        labels = self.fake_labels(step, 0)
        with torch.no_grad(), torch.autocast(self.device.type, enabled=self.amp):
            fake = self.render(self.G, labels)
        lazy_r1 = step % cfg.r1_every == 0
        real_inputs = {
            k: v.detach().requires_grad_(lazy_r1) for k, v in self.D.inputs(real["image"], real["face"]).items()
        }
        with torch.autocast(self.device.type, enabled=self.amp):
            real_out = self.D.judge(real_inputs)
            fake_out = self.D.judge(self.D.inputs(fake["image"].float(), fake["face"].float()))
            adversarial = self._d_adversarial(real_out, fake_out)
            camera = cfg.real_pos_lambda * L.camera_loss(real_out["whole"][:, 1:3], real["camera"])
            camera = camera + cfg.pos_lambda * L.camera_loss(fake_out["whole"][:, 1:3], labels["camera"])
        r1 = torch.zeros((), device=self.device)
        if lazy_r1:
            r1 = sum(
                self.D.config.weights[k]
                * L.r1_penalty(real_out[k][:, 0].float(), real_inputs[k], cfg.r1_gamma * cfg.r1_every)
                for k in real_out
            )
        loss = adversarial + camera + r1
        self._check_finite("D", {"adversarial": adversarial, "camera": camera, "r1": r1})
        self._optimizer_step(loss, self.opt_D, list(self.D.parameters()))
        return {"d_adv": adversarial.detach().item(), "d_camera": camera.detach().item(), "d_r1": float(r1.detach())}

    def g_step(self, step: int) -> dict[str, float]:
        cfg = self.cfg
        labels = self.fake_labels(step, 1)
        with torch.autocast(self.device.type, enabled=self.amp):
            fake = self.render(self.G, labels)
            judged = self.D(fake["image"].float(), fake["face"].float())
            adversarial = self._g_adversarial(judged)
            camera = cfg.pos_lambda * L.camera_loss(judged["whole"][:, 1:3], labels["camera"])
        terms = {"g_adv": adversarial, "g_camera": camera}
        if cfg.stage == 1:
            terms.update(self._deformation_losses(fake, labels, step))
            if cfg.shape_prior_lambda:
                points_rng = _seeded(cfg.seed, step, self.world.rank, 3)
                shape = density_prior_loss(self.G, self.canonical_body, labels, points_rng)
                terms["shape"] = cfg.shape_prior_lambda * shape
        if self.face_estimator is not None:
            # Eq. 9: landmarks of the 3DMM from the sampled coefficients vs from those estimated on the render.
            est_id, est_exp = self.face_estimator(fake["face"].float())
            target = self.face.canonical_landmarks(labels["z_id"], labels["expression"])
            terms["landmark"] = cfg.landmark_lambda * L.landmark_loss(
                self.face.canonical_landmarks(est_id, est_exp), target
            )
        loss = sum(terms.values())
        self._check_finite("G", terms)
        self._optimizer_step(loss, self.opt_G, self.g_params)
        self._update_ema()
        return {k: v.detach().item() for k, v in terms.items()}

    def _deformation_losses(self, fake: dict, labels: dict, step: int) -> dict[str, torch.Tensor]:
        """Eq. 10-13 on a random subset of the portrait's canonical samples."""
        cfg = self.cfg
        x, d = fake["x"].flatten(1, 2), fake["d"].flatten(1, 2)  # [B, N, 3]
        g = _seeded(cfg.seed, step, self.world.rank, 2)
        pick = torch.randperm(x.shape[1], generator=g)[:IMITATION_POINTS].to(x.device)
        x, d = x[:, pick].float(), d[:, pick].float()
        target, distance = self.face.imitation_targets(x.detach(), labels["z_id"], labels["expression"])
        imitation = L.imitation_loss(d, target.to(d.dtype), distance < L.IMITATION_MAX_DISTANCE)
        # Expression smoothness (Eq. 12): the deformation at points perturbed by a small random offset.
        freq, phase = self.G.deform_net.mapping(torch.cat([labels["z_id"], labels["expression"]], dim=-1))
        shift = cfg.exp_smooth_sigma * torch.randn(x.shape, generator=g).to(x.device)
        _, d_shifted = self.G.deform_net(x + shift, freq, phase)
        return {
            "imitation": cfg.imitation_lambda * imitation,
            "exp_smooth": cfg.exp_smooth_lambda * L.expression_smoothness(d, d_shifted),
            "minimal": cfg.minimal_lambda * L.minimal_deformation(d),
            "pose_smooth": cfg.pose_smooth_lambda
            * L.pose_deformation_smoothness(fake["smoothed"].float(), fake["transforms"].float()),
        }

    def _check_finite(self, which: str, terms: dict[str, torch.Tensor]) -> None:
        bad = [k for k, v in terms.items() if not torch.isfinite(torch.as_tensor(v)).all()]
        if bad:
            kept = self.run_dir / STATE_FILE
            raise TrainingError(
                f"step {self.step}: non-finite {which} loss ({', '.join(bad)}); stopped. The last good checkpoint is "
                f"{kept if kept.exists() else 'none yet'}; lower the learning rates or check the data, then --resume"
            )

    @torch.no_grad()
    def _update_ema(self) -> None:
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
            p_ema.lerp_(p, 1 - self.cfg.ema_decay)

    # -- run folder -------------------------------------------------------------------------------------------------

    def _modules(self) -> dict[str, torch.nn.Module]:
        return {"G": self.G, "G_ema": self.G_ema, "D": self.D}

    def save(self) -> None:
        """Write the resumable state and the EMA generator (both atomic); rank 0 only."""
        if self.world.rank != 0:
            return
        save_training_state(
            self.run_dir / STATE_FILE,
            modules=self._modules(),
            optimizers={"G": self.opt_G, "D": self.opt_D},
            step=self.step,
            rng=torch.get_rng_state(),
            extra={"config": json.loads(self.cfg.to_json()), "scaler": self.scaler.state_dict()},
        )
        valid_index = self.body.valid_index.cpu() if self.body_kind == "smpl" else None
        save_generator(
            self.run_dir / GENERATOR_FILE,
            self.G_ema,
            body=self.body_kind,
            valid_index=valid_index,
            note=f"step {self.step}",
        )

    def resume(self) -> None:
        path = self.run_dir / STATE_FILE
        if not path.exists():
            raise RunFolderError(f"--resume: no {STATE_FILE} in {self.run_dir}; start without --resume")
        step, rng, extra = load_training_state(
            path, modules=self._modules(), optimizers={"G": self.opt_G, "D": self.opt_D}
        )
        saved = dataclasses.replace(
            TrainConfig(**extra["config"]), **{k: getattr(self.cfg, k) for k in RESUMABLE_CHANGES}
        )
        if saved != self.cfg:
            changed = sorted(k for k in extra["config"] if getattr(saved, k) != getattr(self.cfg, k))
            raise RunFolderError(
                f"--resume: {self.run_dir} was started with other values of {', '.join(changed)}; only "
                f"{', '.join(RESUMABLE_CHANGES)} may change on resume"
            )
        torch.set_rng_state(rng)
        if extra.get("scaler"):
            self.scaler.load_state_dict(extra["scaler"])
        self.step = step

    def _warm_up(self) -> None:
        """The stage's warm-up before step 0 (train/shape_prior.py); the EMA starts from its result."""
        cfg = self.cfg
        steps, fit, what = (
            (cfg.shape_prior_steps, fit_density_to_body, "shape warm-up, occupancy")
            if cfg.stage == 1
            else (cfg.sr_prior_steps, fit_sr_to_upsampling, "upsampling warm-up, texture")
        )
        if not steps:
            return
        start = time.perf_counter()
        losses = fit(self, steps)
        self.world.broadcast(self.G)  # ranks drew different labels: every replica takes rank 0's result
        self.G_ema.load_state_dict(self.G.state_dict())
        self._log(
            f"{what} loss {losses[0]:.4f} -> {losses[-1]:.4f} in {steps} steps, {time.perf_counter() - start:.1f} s"
        )

    def _log(self, line: str) -> None:
        if self.world.rank == 0:
            with open(self.run_dir / LOG_FILE, "a") as f:
                f.write(line + "\n")

    @torch.no_grad()
    def sample_grid(self) -> Path:
        """A PNG of the EMA generator's portraits and faces for fixed labels (rank 0)."""
        labels = self.fake_labels(0, 0xA11)
        labels = {k: v[: min(SAMPLE_SEEDS, len(v))] for k, v in labels.items()}
        out = self.render(self.G_ema, labels)
        face = _resize(out["face"], out["image"].shape[-1])
        grid = torch.cat([torch.cat(list(out["image"]), dim=2), torch.cat(list(face), dim=2)], dim=1)
        image = ((grid.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
        path = self.run_dir / SAMPLES_DIR / f"step_{self.step:07d}.png"
        path.parent.mkdir(exist_ok=True)
        import imageio.v2 as imageio

        imageio.imwrite(path, image)
        return path

    def run(self, *, resume: bool = False) -> None:
        """Train until ``total_steps``, checkpointing every ``checkpoint_every`` steps and at the end."""
        cfg = self.cfg
        if self.world.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / CONFIG_FILE).write_text(cfg.to_json())
        if resume:
            self.resume()
        bar = tqdm(total=cfg.total_steps, initial=self.step, disable=not self.progress or self.world.rank != 0)
        self._log(f"start at step {self.step}: stage {cfg.stage}, model {cfg.model}, world {self.world.size}")
        if self.step == 0:
            self._warm_up()
        while self.step < cfg.total_steps:
            start = time.perf_counter()
            stats = self.d_step(self.step)
            stats.update(self.g_step(self.step))
            self.step += 1
            stats.update(step=self.step, seconds=round(time.perf_counter() - start, 4))
            if self.world.rank == 0 and (self.step % cfg.log_every == 0 or self.step == cfg.total_steps):
                with open(self.run_dir / STATS_FILE, "a") as f:
                    f.write(json.dumps(stats) + "\n")
            if self.step % cfg.checkpoint_every == 0 or self.step == cfg.total_steps:
                self.save()
            if self.world.rank == 0 and (self.step % cfg.sample_every == 0 or self.step == cfg.total_steps):
                self.sample_grid()
            bar.set_postfix({k: f"{v:.3g}" for k, v in stats.items() if k in ("d_adv", "g_adv", "imitation")})
            bar.update()
        bar.close()
        self._log(f"done at step {self.step}")


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
