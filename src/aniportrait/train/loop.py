"""The training loop (paper section 3): it builds the models and runs generic phases on each step.

One step renders one batch of fakes (with its graph) and draws one batch of reals, then runs the phases in order:

- ``D`` every step: the discriminators against the reals and the detached fakes;
- ``Dreg`` every ``r1_every`` steps: R1 on the reals (lazy regularisation);
- ``G`` every step: the same fakes through the updated discriminators, plus the generator's regularisers; then the
  generator EMA.

A phase is data (:class:`Phase`: its interval, optimiser and clipping groups); its loss terms and their weights come
from :mod:`aniportrait.train.objective`. Each discriminator and each generator network is clipped on its own: one
global norm lets the largest gradient (a camera or imitation term) scale every other step to nothing. The fakes of
a step serve both the D and the G phase (one render per step instead of two, as in the classic DCGAN loop); the G
phase sees them through the discriminators after their update.

Stage 1 trains everything but super-resolution at the LR size; stage 2 trains super-resolution (and RadianceNet's
feature heads, as GRAM-HD) with high-resolution discriminators, everything else frozen. A run starts from another
with ``init_from``: a generator file gives the generator; a training state also gives the discriminators (their
blocks are indexed by resolution, so a stage-2 discriminator takes a stage-1 one's blocks, as in progressive
growing) and, when the discriminators match exactly, their optimiser. The new run's generator must hold the
source's weights (the same sizes), so settings without weights of their own (the neck gate, field textures, ...) may
change, and the run's log names each one that did; a run with colour modulation may also start from a generator
without it: the modulation starts at zero, so the generator renders as its source did.

Determinism and resume: the real batch and the sampled labels/noise of step t depend only on (seed, t, rank), so a
resumed run continues exactly where it stopped; so do the warm-ups, whose progress the state also holds (a fit's step
t depends on (seed, t) and the state it updates, :class:`~aniportrait.train.warmups.WarmupProgress`). Multi-process
training (torchrun) averages gradients with an all-reduce after each backward, the scheme of StyleGAN2/EG3D: R1's
double backward does not go through PyTorch's DDP wrapper, whose reducer hooks would fire in the middle of it.
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
from tqdm.auto import tqdm

from aniportrait.checkpoint import CheckpointError, read_safetensors, save_generator
from aniportrait.config import GeneratorConfig
from aniportrait.data.dataset import PortraitDataset
from aniportrait.data.samplers import LabelBank, id_bank, sample_camera_pose, sample_expression, sample_identity
from aniportrait.images import resample_grid, to_uint8
from aniportrait.models import bfm_file, face_registration
from aniportrait.models.body import BodyModel
from aniportrait.models.discriminator import DiscriminatorConfig, MultiDiscriminator
from aniportrait.models.generator import AniPortraitGenerator, init_planar_manifolds
from aniportrait.train.config import RESUMABLE_CHANGES, TrainConfig, default_d_max_channels
from aniportrait.train.imitation import ExpressionTeacher
from aniportrait.train.objective import Objective
from aniportrait.train.run_folder import (
    GENERATOR_FILE,
    SNAPSHOTS_FILE,
    STATE_FILE,
    WARMUPS_FILE,
    RunFolder,
    RunFolderError,
)
from aniportrait.train.state import FORMAT as STATE_FORMAT
from aniportrait.train.state import load_saved_extras, load_training_state, save_training_state
from aniportrait.train.warmups import (
    CanonicalBody,
    WarmupProgress,
    WarmupStateError,
    deformation_losses,
    fit_deformation_to_3dmm,
    fit_density_to_body,
    fit_generator_to_images,
    fit_sr_to_upsampling,
    update_ema,
)

__all__ = [
    "GENERATOR_FILE",
    "STATE_FILE",
    "Phase",
    "RunFolderError",
    "Trainer",
    "TrainingError",
    "reconstruction_rows",
]

SAMPLE_SEEDS = 8  # identities in a sample grid
ID_BANK_ROWS = 4096  # label rows a checkpoint carries (4096 x 90 float32 = 1.5 MB)
# Tags that keep the random streams of one step apart (seed, step, rank, tag).
TAG_FAKE, TAG_REGULARISERS, TAG_SAMPLES, TAG_SHAPE_PRIOR, TAG_DEFORM_PRIOR, TAG_SR_PRIOR = (
    1,
    2,
    0xA11,
    0x5A9E,
    0xDEF,
    0x5A9F,
)


WARMUP_PREFIX = "warmup."  # names of the running warm-up's optimisers and tensors in a saved state


class TrainingError(RuntimeError):
    """Training cannot continue (a non-finite loss); the message says why and what was kept."""


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


@dataclass
class Phase:
    """One optimisation phase of a step: it runs when ``step % interval == 0``.

    Attributes:
        name: ``"D"``, ``"Dreg"`` or ``"G"`` (the :class:`~aniportrait.train.objective.Objective` method it calls).
        interval: steps between runs (``r1_every`` for ``Dreg``).
        module: the network it trains (the only one whose parameters take gradients during the phase).
        optimizer: its optimiser.
        clip_groups: parameter groups clipped to ``grad_clip`` each on its own.
    """

    name: str
    interval: int
    module: torch.nn.Module
    optimizer: torch.optim.Optimizer
    clip_groups: list[list[torch.nn.Parameter]]

    @property
    def params(self) -> list[torch.nn.Parameter]:
        return [p for group in self.clip_groups for p in group]


def _load_generator_weights(G: AniPortraitGenerator, state: dict[str, torch.Tensor]) -> None:
    """Load ``state`` into a freshly built ``G`` strictly, except that a source without colour modulation leaves
    ``G``'s at its zero start (the identity); any other missing or unexpected key raises."""
    missing, unexpected = G.load_state_dict(state, strict=False)
    missing = [key for key in missing if not key.startswith("radiance_net.color_modulation.")]
    if missing or unexpected:
        raise RuntimeError(f"missing keys {missing[:4]}, unexpected keys {unexpected[:4]}")


def _settings_note(source: GeneratorConfig | None, config: GeneratorConfig) -> str:
    """``"; generator settings changed: name old -> new, ..."`` for each generator setting ``config`` sets differently
    from the source's; empty when none does or the source's config is unknown (the weights' check still applies)."""
    if source is None:
        return ""
    before, after = dataclasses.asdict(source), dataclasses.asdict(config)
    changed = [f"{key} {before[key]} -> {value}" for key, value in after.items() if before[key] != value]
    return f"; generator settings changed: {', '.join(changed)}" if changed else ""


def _seeded(*keys: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(np.random.SeedSequence(list(keys)).generate_state(1)[0]))


def reconstruction_rows(seed: int, count: int, size: int) -> list[int]:
    """The dataset rows the reconstruction warm-ups fit: ``min(count, size)`` of ``size`` rows, chosen with the run's
    seed."""
    return torch.randperm(size, generator=_seeded(seed, 0x4EC0))[: min(count, size)].tolist()


class _StepBatches(torch.utils.data.Sampler):
    """Dataset indices of the real batch of each step from ``start`` on (a DataLoader's ``batch_sampler``)."""

    def __init__(self, indices, start: int, stop: int) -> None:
        self.indices, self.start, self.stop = indices, start, stop

    def __iter__(self):
        return (self.indices(step) for step in range(self.start, self.stop))

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)


def _collate(items: list[dict]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in ("image", "face", "camera")}


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
            init_from: a generator file (the generator only) or a training state / run folder (the generator, its
                EMA and the discriminators; see the module docstring).
            smpl, knn_index, smpl_landmarks: train on SMPL (user-supplied ``SMPL_NEUTRAL.pkl``, the release's
                ``valid_smpl_knn_index.npy`` and its 68 face-landmark barycentrics ``[68, 4]``) instead of the
                built-in procedural rig; all three together.
            bfm: the Basel Face Model (``BFM_model_front.mat``) for the imitation loss instead of the procedural 3DMM.
            face_estimator: optional callable mapping face images [B, 3, F, F] in [-1, 1] to 3DMM coefficients
                (id [B, 80], expression [B, 64]), e.g. a Deep3DFaceRecon network; it turns on the landmark loss
                (paper Eq. 9). It must be differentiable w.r.t. its input and is not trained.
        """
        self.cfg, self.device, self.world, self.progress = config, torch.device(device), World.from_env(), progress
        self.folder = RunFolder(run_dir, writer=self.world.rank == 0)
        self.run_dir = self.folder.path
        if (smpl is None) != (knn_index is None) or (smpl is None) != (smpl_landmarks is None):
            raise RunFolderError("--smpl, --knn-index and --smpl-landmarks go together")
        self.dataset = PortraitDataset(data_dir)
        self.bank = LabelBank.from_dataset(self.dataset)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.G = AniPortraitGenerator(config.generator).to(self.device)
            init_planar_manifolds(self.G)
            self.face_size = config.face_size or self.G.default_face_size(config.stage)
            self.portrait_size = self.G.config.lr_img_size * (1 if config.stage == 1 else 4)
            self.D = MultiDiscriminator(
                DiscriminatorConfig(
                    whole_size=self.portrait_size,
                    face_size=self.face_size,
                    max_channels=config.d_max_channels or default_d_max_channels(config.generator),
                )
            ).to(self.device)
        if smpl is None:
            self.body = BodyModel.procedural()
            bary = face_registration.rig_landmark_bary(self.body)
        else:
            self.body = BodyModel.from_file(smpl, knn_index)
            bary = face_registration.load_landmark_bary(smpl_landmarks)
        self.body = self.body.to(self.device)
        self.body_kind = "procedural" if smpl is None else "smpl"
        # With canonical space at the mean shape, the 3DMM sits on its face whatever the identity's betas.
        self.teacher = ExpressionTeacher.on_body(
            bfm_file.build_face_model(bfm), self.body, bary, mean_shape=config.generator.mean_shape_canonical
        ).to(self.device)
        self.face_model_kind = "procedural" if bfm_file.resolve_bfm_path(bfm) is None else "bfm"
        self.canonical_body = CanonicalBody.of(self.body)
        self.step = 0
        self.G_ema: AniPortraitGenerator | None = None  # set by init_from when the source has an EMA
        self._init_d_state, self._init_note = None, None
        self._resumed_warmup: dict | None = None  # set by resume() from a state saved during the warm-ups
        self._data_identity: dict | None = None
        if init_from is not None:
            self._init_from(init_from)
        self.G.id_bank = self._checkpoint_id_bank()
        if self.G_ema is None:
            self.G_ema = copy.deepcopy(self.G)
        self.G_ema.eval().requires_grad_(False)
        self.G_ema.id_bank = self.G.id_bank
        self.g_params = self._trainable_generator_params()
        betas = (config.beta1, config.beta2)
        self.opt_G = torch.optim.Adam(self._generator_param_groups(), betas=betas)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=config.lr_d, betas=betas)
        if self._init_d_state is not None:
            self.opt_D.load_state_dict(self._init_d_state)
        d_groups = [list(getattr(self.D, k).parameters()) for k in ("whole", "face", "torso")]
        self.phases = [
            Phase("D", 1, self.D, self.opt_D, d_groups),
            Phase("Dreg", config.r1_every, self.D, self.opt_D, d_groups),
            Phase("G", 1, self.G, self.opt_G, self._generator_clip_groups()),
        ]
        self.objective = Objective(config, self.D, self.teacher, self.canonical_body, face_estimator)
        self.amp = config.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)

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

    def _generator_param_groups(self) -> list[dict]:
        """The optimiser's groups: stage 1 runs at ``lr_g``, with RadianceNet's SIREN layers and heads (not its
        mapping network and colour modulation) at ``lr_g * radiance_lr_scale``; stage 2 runs at ``lr_sr``."""
        if self.cfg.stage != 1:
            return [{"params": self.g_params, "lr": self.cfg.lr_sr}]
        net = self.G.radiance_net
        latent = {id(p) for p in net.latent_parameters()}
        scaled = {id(p) for p in net.parameters() if id(p) not in latent}
        groups = [
            {"params": [p for p in self.g_params if id(p) not in scaled], "lr": self.cfg.lr_g},
            {"params": [p for p in self.g_params if id(p) in scaled], "lr": self.cfg.lr_g * self.cfg.radiance_lr_scale},
        ]
        return [group for group in groups if group["params"]]

    def _generator_clip_groups(self) -> list[list[torch.nn.Parameter]]:
        """The trainable parameters of each generator network: each is clipped on its own (a strongly weighted
        regulariser of one network must not shrink the others' steps)."""
        groups = [[p for p in module.parameters() if p.requires_grad] for module in self.G.children()]
        return [group for group in groups if group]

    def _checkpoint_id_bank(self) -> torch.Tensor:
        """The dataset's [id, betas] label rows (at most ``ID_BANK_ROWS``, a seeded subset) that checkpoints carry."""
        bank = id_bank(self.bank).float().cpu()
        if len(bank) > ID_BANK_ROWS:
            bank = bank[torch.randperm(len(bank), generator=_seeded(self.cfg.seed, 0xBA4C))[:ID_BANK_ROWS]]
        return bank

    def _init_from(self, path: str | os.PathLike) -> None:
        """Start from a generator file, or a training state / run folder (see the module docstring)."""
        path = Path(path)
        if path.is_dir():
            path = path / STATE_FILE
        try:
            tensors, metadata = read_safetensors(path, "--init-from checkpoint")
        except CheckpointError as err:
            raise RunFolderError(str(err)) from None
        if metadata.get("format") != STATE_FORMAT:
            from aniportrait.checkpoint import load_generator

            source, _, _ = load_generator(path, device=self.device)
            try:
                _load_generator_weights(self.G, source.state_dict())
            except RuntimeError as err:
                raise RunFolderError(
                    f"{path}: its generator differs from this run's ({self.cfg.model}: {err})"
                ) from None
            self._init_note = f"init from {path}: generator" + _settings_note(source.config, self.G.config)
            return
        extra = json.loads(metadata.get("extra", "{}"))
        warmup = extra.get("warmup")
        if warmup is not None and warmup.get("index", 0) < warmup.get("total", 0):
            raise RunFolderError(
                f"--init-from {path}: that run stopped during its warm-ups; finish it first (aniportrait train "
                f"--resume --out {path.parent} --data ...)"
            )
        saved = extra.get("config", {})
        source_stage = int(saved.get("training", saved).get("stage", 1))
        modules = {
            name: {k[len(f"module/{name}/") :]: v for k, v in tensors.items() if k.startswith(f"module/{name}/")}
            for name in ("G", "G_ema", "D")
        }
        try:
            # A later stage freezes the generator at the earlier stage's EMA; the same stage continues both.
            _load_generator_weights(self.G, modules["G" if source_stage == self.cfg.stage else "G_ema"])
            self.G_ema = copy.deepcopy(self.G)
            if source_stage == self.cfg.stage:
                _load_generator_weights(self.G_ema, modules["G_ema"])
        except RuntimeError as err:
            raise RunFolderError(f"{path}: its generator differs from this run's ({self.cfg.model}: {err})") from None
        loaded, total = self.D.load_progressive(modules["D"])
        if loaded == total:
            optimizers = json.loads(metadata["optimizers"])
            if "D" in optimizers:
                probe = torch.optim.Adam(self.D.parameters())
                load_training_state(path, modules={}, optimizers={"D": probe})
                self._init_d_state = probe.state_dict()
        try:  # settings the source predates count at their defaults
            source_config = GeneratorConfig.from_dict(saved.get("generator"))
        except (TypeError, ValueError, AttributeError):
            source_config = None
        self._init_note = f"init from {path}: generator (stage {source_stage}), discriminator tensors {loaded}/{total}"
        self._init_note += _settings_note(source_config, self.G.config)

    # -- data -------------------------------------------------------------------------------------------------------

    def real_indices(self, step: int) -> list[int]:
        """Dataset rows of this rank's share of the global batch of ``step``: a fixed function of (seed, step)."""
        n, per_epoch = len(self.dataset), max(len(self.dataset) // (self.cfg.batch_size * self.world.size), 1)
        epoch, slot = divmod(step, per_epoch)
        order = torch.randperm(n, generator=_seeded(self.cfg.seed, epoch, 0x5EED))
        start = slot * self.cfg.batch_size * self.world.size + self.world.rank * self.cfg.batch_size
        return order[torch.arange(start, start + self.cfg.batch_size) % n].tolist()

    def _prepare_real(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        batch = {k: v.to(self.device) for k, v in batch.items()}
        # Point-sampled at the render's rays, no prefilter: a prefiltered real would differ from every fake (which
        # point-samples its rays too) by its softer edges.
        batch["image"] = resample_grid(batch["image"], self.portrait_size)
        batch["face"] = resample_grid(batch["face"], self.face_size)
        return batch

    def real_batch(self, step: int) -> dict[str, torch.Tensor]:
        """The real batch of ``step`` (decoded on this thread; :meth:`run` prefetches with ``data_workers``)."""
        return self._prepare_real(_collate([self.dataset[i] for i in self.real_indices(step)]))

    def _real_batches(self, start: int):
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=_StepBatches(self.real_indices, start, self.cfg.total_steps),
            num_workers=self.cfg.data_workers,
            collate_fn=_collate,
        )
        return (self._prepare_real(batch) for batch in loader)

    def reconstruction_images(self) -> dict[str, torch.Tensor]:
        """The reconstruction warm-up's images (``recon_images`` rows chosen with the run's seed, not mirrored), at
        the renders' sizes, with their labels under the generator's names; with ``recon_window`` also ``full``, the
        images at the full-size frame's side, and with ``recon_hr_face_weight`` ``hr_face``, the face images at the
        side of stage 2's face view (both float16)."""
        rows = reconstruction_rows(self.cfg.seed, self.cfg.recon_images, len(self.dataset))
        stacked = self.dataset.rows(rows, ("image", "face", "id", "betas", "expression", "camera", "pose"))
        batch = {("z_id" if key == "id" else key): value.to(self.device) for key, value in stacked.items()}
        if self.cfg.recon_window:  # the full-size frame's window targets; half precision halves their memory
            batch["full"] = resample_grid(batch["image"], self.G.config.hr_img_size).half()
        if self.cfg.recon_hr_face_weight:  # the face at the side evaluation renders it
            batch["hr_face"] = resample_grid(batch["face"], self.G.default_face_size(2)).half()
        batch["image"] = resample_grid(batch["image"], self.portrait_size)
        batch["face"] = resample_grid(batch["face"], self.face_size)
        return batch

    def fake_labels(self, step: int, tag: int = TAG_FAKE) -> dict[str, torch.Tensor]:
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
        if self.cfg.texel_jitter:
            labels["texel_offset"] = torch.rand(2, generator=g) - 0.5
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
            texel_offset=labels.get("texel_offset"),
            hr_window=labels.get("hr_window"),
            face_textures=self.cfg.face_textures,
            face_at_lookup=self.cfg.face_at_lookup,
            hr_face_size=labels.get("hr_face_size"),
        )

    # -- one step ---------------------------------------------------------------------------------------------------

    def _phase_terms(self, phase: Phase, real: dict, fake: dict, labels: dict, step: int) -> tuple[dict, dict]:
        if phase.name == "D":
            return self.objective.discriminator(real, {**fake, "camera": labels["camera"]})
        if phase.name == "Dreg":
            return self.objective.discriminator_reg(real)
        rng = _seeded(self.cfg.seed, step, self.world.rank, TAG_REGULARISERS)
        return self.objective.generator(self.G, fake, labels, rng)

    def _optimizer_step(self, loss: torch.Tensor, phase: Phase) -> None:
        """Backward (scaled under AMP), average gradients over ranks, clip each group, step."""
        phase.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.world.all_reduce_grads(phase.params)
        self.scaler.unscale_(phase.optimizer)
        for group in phase.clip_groups:
            torch.nn.utils.clip_grad_norm_(group, self.cfg.grad_clip)
        self.scaler.step(phase.optimizer)
        self.scaler.update()

    def train_step(self, step: int, real: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
        """One step: render the fakes once, then run each due phase. Returns the logged values."""
        real = self.real_batch(step) if real is None else real
        labels = self.fake_labels(step)
        with torch.autocast(self.device.type, enabled=self.amp):
            fake = self.render(self.G, labels)
        stats: dict[str, float] = {}
        for phase in self.phases:
            if step % phase.interval:
                continue
            self.D.requires_grad_(phase.module is self.D)
            with torch.autocast(self.device.type, enabled=self.amp):
                terms, extra = self._phase_terms(phase, real, fake, labels, step)
            self._check_finite(phase.name, terms)
            self._optimizer_step(sum(terms.values()), phase)
            if phase.name == "G":
                self._update_ema()
            stats.update({k: float(v.detach()) for k, v in terms.items()}, **extra)
        self.D.requires_grad_(True)
        return stats

    def _check_finite(self, which: str, terms: dict[str, torch.Tensor]) -> None:
        bad = [k for k, v in terms.items() if not torch.isfinite(torch.as_tensor(v)).all()]
        if bad:
            kept = self.folder.state
            raise TrainingError(
                f"step {self.step}: non-finite {which} loss ({', '.join(bad)}); stopped. The last good checkpoint is "
                f"{kept if kept.exists() else 'none yet'}; lower the learning rates or check the data, then --resume"
            )

    def _update_ema(self) -> None:
        update_ema(list(self.G_ema.parameters()), list(self.G.parameters()), self.cfg.ema_decay)

    # -- checkpoints ------------------------------------------------------------------------------------------------

    def _data_id(self) -> dict:
        """What identifies the dataset in a saved state: its row count and the digest of its labels (cached)."""
        if self._data_identity is None:
            self._data_identity = {"count": len(self.dataset), "labels_sha256": self.dataset.label_digest()}
        return self._data_identity

    def _modules(self) -> dict[str, torch.nn.Module]:
        return {"G": self.G, "G_ema": self.G_ema, "D": self.D}

    def save(self) -> None:
        """Write the resumable state and the EMA generator (both atomic); rank 0 only."""
        if self.world.rank != 0:
            return
        self._save_state()
        valid_index = self.body.valid_index.cpu() if self.body_kind == "smpl" else None
        save_generator(
            self.folder.generator,
            self.G_ema,
            body=self.body_kind,
            face_model=self.face_model_kind,
            valid_index=valid_index,
            rendering=self.cfg.rendering,
            note=f"step {self.step}",
        )

    def _save_state(
        self,
        warmup: dict | None = None,
        optimizers: dict[str, torch.optim.Optimizer] | None = None,
        tensors: dict[str, torch.Tensor] | None = None,
    ) -> None:
        """Write the resumable state (rank 0 only); during the warm-ups also their progress (``warmup``: see
        :meth:`_warm_up`) and the running warm-up's optimisers and learned tensors."""
        if self.world.rank != 0:
            return
        extra = {"config": json.loads(self.cfg.to_json()), "scaler": self.scaler.state_dict(), "data": self._data_id()}
        if warmup is not None:
            extra["warmup"] = warmup
        save_training_state(
            self.folder.state,
            modules=self._modules(),
            optimizers={
                "G": self.opt_G,
                "D": self.opt_D,
                **{WARMUP_PREFIX + k: v for k, v in (optimizers or {}).items()},
            },
            step=self.step,
            rng=torch.get_rng_state(),
            extra=extra,
            others={WARMUP_PREFIX + k: v for k, v in (tensors or {}).items()},
        )

    def resume(self) -> None:
        """Load the run folder's state (the config was taken from the folder: see :class:`RunFolder`); a state saved
        during the warm-ups also gives the running warm-up's progress, which :meth:`_warm_up` continues."""
        if not self.folder.has_state():
            raise RunFolderError(f"--resume: no {STATE_FILE} in {self.run_dir}; start without --resume")
        step, rng, extra = load_training_state(
            self.folder.state, modules=self._modules(), optimizers={"G": self.opt_G, "D": self.opt_D}
        )
        saved = TrainConfig.from_dict(extra["config"])
        changed = [k for k in saved.changed_keys(self.cfg) if k not in RESUMABLE_CHANGES]
        if changed:
            raise RunFolderError(
                f"--resume: {self.run_dir} was started with other values of {', '.join(changed)}; only "
                f"{', '.join(RESUMABLE_CHANGES)} may change on resume"
            )
        data = extra.get("data")  # states written before the check have none
        if data is not None and data != self._data_id():
            raise RunFolderError(
                f"--resume: {self.dataset.path} is not the dataset {self.run_dir} was started on ({data['count']} "
                f"rows, labels {data['labels_sha256'][:12]}...; this one: {len(self.dataset)} rows, labels "
                f"{self._data_id()['labels_sha256'][:12]}...); give that run's --data"
            )
        torch.set_rng_state(rng)
        if extra.get("scaler"):
            self.scaler.load_state_dict(extra["scaler"])
        self.step = step
        if extra.get("warmup") is not None:
            optimizer_states, tensors = load_saved_extras(self.folder.state, WARMUP_PREFIX)
            self._resumed_warmup = {**extra["warmup"], "optimizer_states": optimizer_states, "tensors": tensors}

    # -- warm-ups, samples, snapshots -------------------------------------------------------------------------------

    def _warm_up(self) -> None:
        """The stage's warm-ups before step 0 (train/warmups.py); the EMA starts from their result. Without a
        warm-up the EMA stays as it is (a run started ``--init-from`` a same-stage run keeps that run's EMA).

        Every ``checkpoint_every`` steps of a warm-up, and after each, the run's state is saved with the warm-ups'
        progress (``warmup`` in its metadata: the finished warm-ups, the running one's index, step, losses and
        seconds so far), so that ``--resume`` continues the warm-ups exactly where they stopped.
        """
        cfg = self.cfg

        def draw(tag):
            return lambda step: self.fake_labels(step, tag)

        recon_what = f"reconstruction warm-up on {min(cfg.recon_images, len(self.dataset))} images, L1"

        if cfg.stage == 1:
            fits = [
                (
                    "shape warm-up, occupancy",
                    cfg.shape_prior_steps,
                    lambda n, p: fit_density_to_body(
                        self.G, self.canonical_body, draw(TAG_SHAPE_PRIOR), n, cfg.seed, p
                    ),
                ),
                (
                    "deformation warm-up, imitation",
                    cfg.deform_prior_steps,
                    lambda n, p: fit_deformation_to_3dmm(
                        self.G, self.teacher, draw(TAG_DEFORM_PRIOR), n, cfg.seed, cfg, p
                    ),
                ),
                (recon_what, cfg.recon_steps, lambda n, p: self.reconstruct(n, p)),
            ]
        else:
            fits = [
                (
                    "upsampling warm-up, texture",
                    cfg.sr_prior_steps,
                    lambda n, p: fit_sr_to_upsampling(self.G, draw(TAG_SR_PRIOR), n, cfg.impl, p),
                ),
                (recon_what, cfg.sr_recon_steps, lambda n, p: self.reconstruct(n, p)),
            ]
        fits = [(what, steps, fit) for what, steps, fit in fits if steps]
        names = [what.split(",")[0] for what, _, _ in fits]
        resumed = self._resumed_warmup or {"index": 0}
        for index, (what, steps, fit) in enumerate(fits):
            if index < resumed["index"]:  # finished before the stop
                continue
            self._run_warmup(index, names, what, steps, fit, resumed if index == resumed["index"] else None)
            if index + 1 < len(fits):
                self._save_state({"index": index + 1, "step": 0, "total": len(fits), "names": names})
        self._resumed_warmup = None
        self.world.broadcast(self.G)  # ranks drew different labels: every replica takes rank 0's result
        if fits:
            self.G_ema.load_state_dict(self.G.state_dict())
            self._save_state({"index": len(fits), "step": 0, "total": len(fits), "names": names})

    def reconstruct(
        self, steps: int, progress: WarmupProgress | None = None, images: dict[str, torch.Tensor] | None = None
    ) -> list[float]:
        """The stage's reconstruction warm-up (``fit_generator_to_images``): ``steps`` steps on ``images`` (default
        :meth:`reconstruction_images`) from the run's seed; returns the L1 error of each step. Stage 1 keeps the
        deformation losses on; the deformation is frozen in stage 2, which fits the image error alone."""
        cfg = self.cfg
        if cfg.stage == 1:

            def regularisers(labels, out, rng):
                x = out["x"].flatten(1, 2).detach()
                return deformation_losses(self.G, self.teacher, labels, x, rng, cfg)

        else:

            def regularisers(labels, out, rng):
                return {}

        return fit_generator_to_images(
            self.G,
            self.g_params,
            lambda labels: self.render(self.G, labels),
            self.reconstruction_images() if images is None else images,
            steps,
            cfg.seed,
            cfg,
            regularisers,
            progress,
        )

    def _run_warmup(self, index: int, names: list[str], what: str, steps: int, fit, resumed: dict | None) -> None:
        """Run warm-up ``index`` of ``names`` (``fit(steps, progress)``), from ``resumed``'s saved progress if it
        holds any, with a progress bar and a checkpoint every ``checkpoint_every`` steps; log its loss curve."""
        done_before = (resumed or {}).get("step", 0)
        seconds_before = resumed.get("seconds", 0.0) if done_before else 0.0
        start = time.perf_counter()
        bar = tqdm(
            total=steps, initial=done_before, desc=names[index], disable=not self.progress or self.world.rank != 0
        )

        def save(done, losses, optimizers, tensors):
            record = {"index": index, "step": done, "losses": losses, "total": len(names), "names": names}
            record["seconds"] = round(seconds_before + time.perf_counter() - start, 1)
            self._save_state(record, optimizers, tensors)

        def on_step(done, losses):
            bar.update(done - bar.n)
            bar.set_postfix(loss=f"{losses[-1]:.3g}", refresh=False)

        saved = {}
        if done_before:
            saved = {k: resumed[k] for k in ("losses", "optimizer_states", "tensors")}
            self.folder.log(f"resume the {names[index]} at step {done_before} of {steps}")
        progress = WarmupProgress(save, self.cfg.checkpoint_every, step=done_before, on_step=on_step, **saved)
        try:
            losses = fit(steps, progress)
        except WarmupStateError as err:
            raise RunFolderError(f"--resume: {self.folder.state} cannot be resumed ({err})") from None
        finally:
            bar.close()
        seconds = seconds_before + time.perf_counter() - start
        self.folder.log(f"{what} loss {losses[0]:.4g} -> {losses[-1]:.4g} in {steps} steps, {seconds:.1f} s")
        for i in sorted({*range(0, steps, self.cfg.log_every), steps - 1}):
            self.folder.stats({"warmup": names[index], "step": i, "loss": losses[i]}, WARMUPS_FILE)

    @torch.no_grad()
    def sample_grid(self) -> Path:
        """A PNG of the EMA generator's portraits and faces for fixed labels (rank 0)."""
        labels = self.fake_labels(0, TAG_SAMPLES)
        labels.pop("texel_offset", None)  # the samples show the textures' own grid
        labels = {k: v[: min(SAMPLE_SEEDS, len(v))] for k, v in labels.items()}
        out = self.render(self.G_ema, labels)
        face = resample_grid(out["face"], out["image"].shape[-1])
        grid = torch.cat([torch.cat(list(out["image"]), dim=2), torch.cat(list(face), dim=2)], dim=1)
        image = to_uint8(grid.float())
        path = self.folder.sample(self.step)
        path.parent.mkdir(exist_ok=True)
        import imageio.v2 as imageio

        imageio.imwrite(path, image)
        return path

    def snapshot(self) -> dict[str, float] | None:
        """Control errors and fidelity of the EMA generator with the synthetic world's estimator (procedural body
        only; ``snapshot_metrics`` renders), appended to ``snapshots.jsonl``."""
        if not self.cfg.snapshot_metrics or self.body_kind != "procedural" or self.world.rank != 0:
            return None
        from aniportrait.eval.snapshot import snapshot_metrics

        start = time.perf_counter()
        metrics = snapshot_metrics(
            self.G_ema,
            self.body,
            self.dataset,
            num=self.cfg.snapshot_metrics,
            seed=self.cfg.seed,
            stage=self.cfg.stage,
            face_size=self.face_size,
            impl=self.cfg.impl,
        )
        record = {"step": self.step, **metrics, "seconds": round(time.perf_counter() - start, 2)}
        self.folder.stats(record, SNAPSHOTS_FILE)
        return record

    # -- the run ----------------------------------------------------------------------------------------------------

    def run(self, *, resume: bool = False) -> None:
        """Train until ``total_steps``, checkpointing every ``checkpoint_every`` steps and at the end."""
        cfg = self.cfg
        if resume:
            self.resume()
            if self._resumed_warmup is None:
                self.folder.truncate_logs(self.step)
            else:  # stopped in or right after the warm-ups: keep only the finished warm-ups' curves
                self.folder.truncate_logs(-1)
                record = self._resumed_warmup
                self.folder.truncate_warmups(record["names"][: record["index"]])
        self.folder.start(cfg)
        self.folder.log(f"start at step {self.step}: stage {cfg.stage}, model {cfg.model}, world {self.world.size}")
        if self._init_note and self.step == 0:
            self.folder.log(self._init_note)
        if self.step == 0:
            self._warm_up()
            if self.world.rank == 0:
                self.snapshot()
        bar = tqdm(total=cfg.total_steps, initial=self.step, disable=not self.progress or self.world.rank != 0)
        for real in self._real_batches(self.step):
            start = time.perf_counter()
            stats = self.train_step(self.step, real)
            self.step += 1
            stats.update(step=self.step, seconds=round(time.perf_counter() - start, 4))
            if self.step % cfg.log_every == 0 or self.step == cfg.total_steps:
                self.folder.stats(stats)
            if self.step % cfg.checkpoint_every == 0 or self.step == cfg.total_steps:
                self.save()
            if self.world.rank == 0 and (self.step % cfg.sample_every == 0 or self.step == cfg.total_steps):
                self.sample_grid()
                self.snapshot()
            bar.set_postfix({k: f"{v:.3g}" for k, v in stats.items() if k in ("d_face", "g_face", "imitation")})
            bar.update()
        bar.close()
        self.folder.log(f"done at step {self.step}")
