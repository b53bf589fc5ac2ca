"""Training configuration. Every value the paper leaves open takes a predecessor's default, named in its comment.

Sources: [P] AniPortraitGAN paper (paper.md section 3), [G] GRAM, [H] GRAM-HD, [A] AniFaceGAN (paper.md section 6,
reference.md section 4), [ours] a choice of this project.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

from aniportrait.config import CONFIGS


@dataclass(frozen=True)
class TrainConfig:
    # -- model and schedule
    model: str = "tiny"  # [ours] generator config preset: tiny, small or sshq512 (the paper's)
    stage: int = 1  # [P] 1: low resolution, all but super-resolution; 2: SR + high-res discriminators, rest frozen
    total_steps: int = 1000  # [ours] optimiser steps of this run (GRAM-HD's default is 100k)
    batch_size: int = 4  # [A] per process (AniFaceGAN: 4 per GPU)
    face_size: int = (
        0  # [P] face-camera image side; 0 = the portrait's LR side (stage 1: 128) or half the HR side (stage 2: 256)
    )
    d_max_channels: int = (
        0  # [G] 400 channels at most; 0 = by model: 400 for sshq512, [ours] 128 for small, 32 for tiny
    )
    shape_prior_steps: int = (
        0  # [ours] stage-1 warm-up fitting RadianceNet's density to the body (train/shape_prior.py)
    )
    shape_prior_lambda: float = 0.0  # [ours] weight of the warm-up's occupancy loss kept on during stage 1
    sr_prior_steps: int = 0  # [ours] stage-2 warm-up fitting super-resolution to x4 bilinear upsampling
    train_smoother: bool = True  # [P] the LBS smoother is learnable; [ours] False skips its costly CPU backward
    pose_sampling: str = "paired"  # [ours] "paired" (camera + pose from one label row) or "independent" (joint pairs)
    # -- optimisation
    lr_g: float = 2e-5  # [G][A] generator learning rate (stage 1)
    lr_sr: float = 2e-4  # [H] super-resolution learning rate (stage 2)
    lr_d: float = 2e-4  # [G][A][H] discriminator learning rate
    beta1: float = 0.0  # [G][A][H] Adam betas (0, 0.9)
    beta2: float = 0.9
    grad_clip: float = 0.3  # [A][H] gradient-norm clipping of G and D
    ema_decay: float = 0.999  # [G][H] EMA of the generator (the first of their two EMAs)
    amp: bool = True  # [G][H] mixed precision, on CUDA only
    # -- adversarial losses
    r1_gamma: float = 1.0  # [G][A] R1 weight at 128 (GRAM-HD uses 5 at 512: set it for stage 2)
    r1_every: int = 1  # [ours] lazy R1 (StyleGAN2): every k-th D step, weighted by k; 1 = every step as [G][A]
    weight_whole: float = 0.1  # [P] D_whole
    weight_face: float = 1.0  # [P] D_face
    weight_torso: float = 0.5  # [P] D_torso
    pos_lambda: float = 15.0  # [G][A] camera regression by the discriminators (fakes, in D and G steps)
    real_pos_lambda: float = 15.0  # [G] camera regression on reals (D step)
    # -- deformation losses [P] Eq. 10-13; weights not stated anywhere: [ours]
    imitation_lambda: float = 20.0  # [A]'s density_lambda / rgb_lambda at the start (meaning undocumented)
    exp_smooth_lambda: float = 1.0  # [ours]
    exp_smooth_sigma: float = 0.01  # [ours] canonical-unit perturbation of the expression-smoothness loss
    minimal_lambda: float = 1.0  # [ours]
    pose_smooth_lambda: float = 1.0  # [ours]
    landmark_lambda: float = 1.0  # [ours] only with a face-coefficient estimator
    # -- bookkeeping
    seed: int = 0  # [ours] seeds the model init, the label sampling and the data order
    log_every: int = 10  # [ours] steps between stats lines
    sample_every: int = 200  # [ours] steps between sample grids
    checkpoint_every: int = 200  # [ours] steps between checkpoints
    impl: str = "auto"  # [ours] kernel implementation: auto, ref or triton

    def __post_init__(self) -> None:
        if self.model not in CONFIGS:
            raise ValueError(f"model must be one of {', '.join(CONFIGS)}, got {self.model!r}")
        if self.stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {self.stage}")
        if self.pose_sampling not in ("paired", "independent"):
            raise ValueError(f"pose_sampling must be paired or independent, got {self.pose_sampling!r}")
        if self.impl not in ("auto", "ref", "triton"):
            raise ValueError(f"impl must be auto, ref or triton, got {self.impl!r}")
        if self.d_max_channels < 0:
            raise ValueError(f"d_max_channels must be 0 (by model) or positive, got {self.d_max_channels}")
        for name in ("shape_prior_steps", "sr_prior_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or positive, got {getattr(self, name)}")
        for name in ("r1_every", "total_steps", "batch_size", "log_every", "sample_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    def with_overrides(self, overrides: list[str]) -> TrainConfig:
        """Apply ``key=value`` strings, typed by the field (``--set lr_g=1e-4 --set amp=false``)."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        values = {}
        for item in overrides:
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep or key not in fields:
                known = ", ".join(sorted(fields))
                raise ValueError(f"bad --set {item!r}: expected key=value with key one of {known}")
            values[key] = _parse(key, raw.strip(), type(getattr(self, key)))
        return dataclasses.replace(self, **values)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        data = json.loads(text)
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown training config keys: {', '.join(unknown)}")
        return cls(**data)


def _parse(key: str, raw: str, kind: type):
    try:
        if kind is bool:
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return raw.lower() in ("true", "1", "yes")
        if kind is int:
            return int(raw)
        if kind is float:
            value = float(raw)
            if not math.isfinite(value):
                raise ValueError
            return value
        return raw
    except ValueError:
        raise ValueError(f"bad --set {key}={raw}: expected a {kind.__name__}") from None


# Discriminator width when d_max_channels is 0.
D_MAX_CHANNELS_BY_MODEL = {"sshq512": 400, "small": 128, "tiny": 32}

PRESETS = {
    "tiny": TrainConfig(),
    # The built-in default's CPU recipe (assets/models/MODEL_CARD.md has the exact commands: 300 steps of this, then
    # 1,200 at lr_g 3e-5, then stage 2). A short run, so: the warm-ups and the occupancy regulariser, larger
    # generator steps than GRAM's 2e-5, a shorter EMA, and a frozen smoother (its depthwise 3-D convolution
    # backward is a quarter of a CPU step).
    "small": TrainConfig(
        model="small",
        shape_prior_steps=300,
        shape_prior_lambda=5.0,
        sr_prior_steps=1000,
        train_smoother=False,
        lr_g=1e-4,
        ema_decay=0.995,  # a 200-step window: 0.999's 1000 steps would still hold the warm-up at the end
        total_steps=2000,
        sample_every=100,
        checkpoint_every=100,
    ),
    "sshq512": TrainConfig(model="sshq512", total_steps=100_000, sample_every=1000, checkpoint_every=1000),
}
