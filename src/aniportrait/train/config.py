"""Training configuration: one frozen dataclass holding every setting and every loss weight of a run.

Every value the paper leaves open takes a predecessor's default or a measured choice of ours, named in its comment.
Sources: [P] AniPortraitGAN paper, [G] GRAM, [H] GRAM-HD, [A] AniFaceGAN, [ours] a choice of this project (the
measurements behind the ``small`` recipe are in docs/training/).

Values are range-checked when the config is built (``TrainConfig(...)``, ``with_overrides``, ``from_json``), so a bad
``--set`` fails before anything runs, with one line naming the key, the value and the allowed range.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

from aniportrait.config import CONFIGS
from aniportrait.errors import UserInputError


class ConfigError(UserInputError):
    """A training setting that cannot be used; the message names the key, its value and what is allowed."""


@dataclass(frozen=True)
class TrainConfig:
    # -- model and schedule
    model: str = "tiny"  # generator config preset: tiny (tests), small (the built-in default) or sshq512 (the paper's)
    stage: int = 1  # [P] 1: low resolution, all but super-resolution; 2: SR + high-res discriminators, rest frozen
    total_steps: int = 1000  # [ours] optimiser steps of this run (GRAM-HD's default is 100k)
    batch_size: int = 4  # [A] per process (AniFaceGAN: 4 per GPU)
    face_size: int = 0  # [P] face-camera side; 0 = the portrait's LR side (stage 1) or half the HR side (stage 2)
    d_max_channels: int = 0  # [G] 400 channels at most; 0 = by model: 400 sshq512, [ours] 32 small and tiny
    pose_sampling: str = "paired"  # [ours] "paired" (camera + pose from one label row) or "independent" (joint pairs)
    train_smoother: bool = True  # [P] the LBS smoother is learnable; [ours] False skips its costly CPU backward
    data_workers: int = 0  # [ours] DataLoader processes decoding the real images (0 = on the training thread)
    # -- warm-ups before step 0 [ours] (train/warmups.py)
    shape_prior_steps: int = 0  # stage 1: RadianceNet's density fitted to the body's canonical occupancy
    deform_prior_steps: int = 0  # stage 1: DeformNet fitted to the 3DMM's expression deformation
    sr_prior_steps: int = 0  # stage 2: super-resolution fitted to x4 upsampling of the LR textures
    recon_steps: int = 0  # stage 1: the generator fitted to real images with learned noise codes (an auto-decoder)
    sr_recon_steps: int = 0  # stage 2, after sr_prior_steps: super-resolution fitted to the real images likewise
    recon_images: int = 1024  # the images both fit (a seeded choice of the dataset's rows)
    recon_lr: float = 2e-4  # their generator learning rate (Adam 0.9 / 0.99)
    recon_codes: str = "learned"  # their noise: "learned" (a code per image) or "prior" (fresh N(0, I) per render)
    recon_code_lr: float = 0.2  # their codes' learning rate: each code is updated only when its image is drawn
    recon_code_init: str = "random"  # their codes' start: N(0, I) draws, or "pca": the images' whitened components
    recon_code_sphere: bool = False  # keep each code at norm sqrt(z_noise_dim), where N(0, I) draws lie (GLO)
    # -- optimisation
    lr_g: float = 2e-5  # [G][A] generator learning rate (stage 1)
    radiance_lr_scale: float = 1.0  # [ours] factor on lr_g for RadianceNet's SIREN layers and heads (not its mapping)
    lr_sr: float = 2e-4  # [H] super-resolution learning rate (stage 2)
    lr_d: float = 2e-4  # [G][A][H] discriminator learning rate
    beta1: float = 0.0  # [G][A][H] Adam betas (0, 0.9)
    beta2: float = 0.9
    grad_clip: float = 0.3  # [A][H] gradient-norm clipping, of G and of each discriminator on its own [ours]
    ema_decay: float = 0.999  # [G][H] EMA of the generator (the first of their two EMAs)
    amp: bool = True  # [G][H] mixed precision, on CUDA only
    # -- adversarial losses
    r1_gamma: float = 1.0  # [G][A] R1 weight at 128 (GRAM-HD uses 5 at 512: set it for stage 2)
    r1_every: int = 1  # [ours] lazy R1 (StyleGAN2): a regularisation phase every k-th step, weighted by k
    weight_whole: float = 0.1  # [P] D_whole
    weight_face: float = 1.0  # [P] D_face
    weight_torso: float = 0.5  # [P] D_torso
    # [G][A] camera regression by D_whole on fakes (D and G steps) and reals (D step), radians^2. [ours] it is a
    # D_whole term, so it carries D_whole's weight too (GRAM has a single discriminator of weight 1).
    pos_lambda: float = 15.0
    real_pos_lambda: float = 15.0
    # -- deformation losses [P] Eq. 10-13; weights not stated anywhere
    imitation_lambda: float = 20.0  # [A]'s density_lambda / rgb_lambda at the start (meaning undocumented)
    imitation_max_distance: float = 0.01  # [ours] portrait points farther from the 3DMM face get a zero target
    imitation_points: int = 1024  # [ours] per image: points on the 3DMM surface, and as many portrait samples
    exp_smooth_lambda: float = 1.0  # [ours]
    exp_smooth_sigma: float = 0.01  # [ours] canonical-unit perturbation of the expression-smoothness loss
    minimal_lambda: float = 1.0  # [ours]
    pose_smooth_lambda: float = 1.0  # [ours] (no effect with a frozen smoother)
    landmark_lambda: float = 1.0  # [ours] only with a face-coefficient estimator
    shape_prior_lambda: float = 0.0  # [ours] the shape warm-up's occupancy loss kept on during stage 1
    # -- bookkeeping
    seed: int = 0  # [ours] seeds the model init, the label sampling and the data order
    log_every: int = 10  # [ours] steps between stats lines
    sample_every: int = 200  # [ours] steps between sample grids (and snapshot metrics where they apply)
    checkpoint_every: int = 200  # [ours] steps between checkpoints
    snapshot_metrics: int = 0  # [ours] renders per snapshot for the control and fidelity metrics (0 = off)
    impl: str = "auto"  # [ours] kernel implementation: auto, ref or triton

    def __post_init__(self) -> None:
        choices = {
            "model": tuple(CONFIGS),
            "stage": (1, 2),
            "pose_sampling": ("paired", "independent"),
            "recon_codes": ("learned", "prior"),
            "recon_code_init": ("random", "pca"),
            "impl": ("auto", "ref", "triton"),
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(
                    f"{key}={getattr(self, key)!r} is not allowed; use one of {', '.join(map(str, allowed))}"
                )
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            expected = type(f.default)
            if type(value) is not expected and not (expected is float and type(value) is int):
                raise ConfigError(f"{f.name}={value!r} must be a {expected.__name__}")
            if expected is float and not math.isfinite(value):
                raise ConfigError(f"{f.name}={value!r} must be a finite number")
        for key, (lo, hi, lo_open, hi_open) in RANGES.items():
            value = getattr(self, key)
            below = value <= lo if lo_open else value < lo
            above = hi is not None and (value >= hi if hi_open else value > hi)
            if below or above:
                raise ConfigError(f"{key}={value} is out of range: it must be in {_describe(lo, hi, lo_open, hi_open)}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    def with_overrides(self, overrides: list[str] | tuple[str, ...]) -> TrainConfig:
        """Apply ``key=value`` strings, typed by the field (``--set lr_g=1e-4 --set amp=false``)."""
        return dataclasses.replace(self, **parse_overrides(overrides))

    def changed_keys(self, other: TrainConfig) -> list[str]:
        """Names of the fields whose values differ from ``other``'s, sorted."""
        return sorted(f.name for f in dataclasses.fields(self) if getattr(self, f.name) != getattr(other, f.name))

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"the training config is not valid JSON ({err})") from None
        if not isinstance(data, dict):
            raise ConfigError("the training config must be a JSON object")
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"unknown training config keys: {', '.join(unknown)}")
        return cls(**data)


# Allowed ranges: key -> (low, high or None, low excluded, high excluded).
RANGES = {
    "total_steps": (1, None, False, False),
    "batch_size": (1, 4096, False, False),
    "face_size": (0, 4096, False, False),
    "d_max_channels": (0, 4096, False, False),
    "data_workers": (0, 64, False, False),
    "shape_prior_steps": (0, 10**7, False, False),
    "deform_prior_steps": (0, 10**7, False, False),
    "sr_prior_steps": (0, 10**7, False, False),
    "recon_steps": (0, 10**7, False, False),
    "sr_recon_steps": (0, 10**7, False, False),
    "recon_images": (1, 10**7, False, False),
    "recon_lr": (0.0, 1.0, True, False),
    "recon_code_lr": (0.0, 10.0, True, False),
    "lr_g": (0.0, 1.0, True, False),
    "lr_sr": (0.0, 1.0, True, False),
    "radiance_lr_scale": (0.0, 1.0, True, False),
    "lr_d": (0.0, 1.0, True, False),
    "beta1": (0.0, 1.0, False, True),
    "beta2": (0.0, 1.0, False, True),
    "grad_clip": (0.0, None, True, False),
    "ema_decay": (0.0, 1.0, False, True),
    "r1_gamma": (0.0, None, False, False),
    "r1_every": (1, 10**6, False, False),
    "weight_whole": (0.0, None, False, False),
    "weight_face": (0.0, None, False, False),
    "weight_torso": (0.0, None, False, False),
    "pos_lambda": (0.0, None, False, False),
    "real_pos_lambda": (0.0, None, False, False),
    "imitation_lambda": (0.0, None, False, False),
    "imitation_max_distance": (0.0, None, True, False),
    "imitation_points": (1, 10**6, False, False),
    "exp_smooth_lambda": (0.0, None, False, False),
    "exp_smooth_sigma": (0.0, None, False, False),
    "minimal_lambda": (0.0, None, False, False),
    "pose_smooth_lambda": (0.0, None, False, False),
    "landmark_lambda": (0.0, None, False, False),
    "shape_prior_lambda": (0.0, None, False, False),
    "seed": (0, 2**63 - 1, False, False),
    "log_every": (1, None, False, False),
    "sample_every": (1, None, False, False),
    "checkpoint_every": (1, None, False, False),
    "snapshot_metrics": (0, 100_000, False, False),
}

# Settings a resumed run may change: the schedule's length, the bookkeeping cadence and how (not what) it computes.
# Everything else must match the run folder's config.json.
RESUMABLE_CHANGES = (
    "total_steps",
    "log_every",
    "sample_every",
    "checkpoint_every",
    "snapshot_metrics",
    "data_workers",
    "impl",
)


def _describe(lo, hi, lo_open: bool, hi_open: bool) -> str:
    if hi is None:
        return f"{'(' if lo_open else '['}{lo}, infinity)"
    return f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> dict:
    """``["key=value", ...]`` -> {key: typed value}, typed by the TrainConfig field; unknown keys refused."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    values = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"bad --set {item!r}: expected key=value with key one of {known}")
        values[key] = _parse(key, raw.strip(), type(fields[key].default))
    return values


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
        raise ConfigError(f"bad --set {key}={raw}: expected a finite {kind.__name__}") from None


# Discriminator width when d_max_channels is 0. [ours] small: 32 channels. At 128 the three discriminators had 3.0 M
# parameters against the generator's 150 k trainable ones and took half of a CPU step; 32 channels take 14% less
# time than 64 (docs/training/README.md).
D_MAX_CHANNELS_BY_MODEL = {"sshq512": 400, "small": 32, "tiny": 32}

PRESETS = {
    "tiny": TrainConfig(),
    # The built-in default's CPU recipe: assets/models/MODEL_CARD.md gives the commands, docs/training/ the
    # measurements behind each value.
    "small": TrainConfig(
        model="small",
        # One adversarial step per stage: the warm-ups make the model. On this CPU budget every measured adversarial
        # run made the held-out numbers worse, at a quarter of lr_g too (docs/training/README.md, sections 6-8).
        total_steps=1,
        shape_prior_steps=300,
        deform_prior_steps=1500,
        recon_steps=2000,  # camera error 3.6 deg against 7.5 for 2,250 adversarial steps (held-out, section 8)
        recon_codes="prior",  # the appearance read from the identity label, so that seeds differ (section 9)
        recon_images=4096,  # with no code per image, more images cost nothing per step
        sr_prior_steps=1000,
        train_smoother=False,
        lr_g=2e-5,  # [G][A]: at 1e-4 each SIREN step outran the discriminators (docs/training/README.md)
        ema_decay=0.995,  # a 200-step window: 0.999's 1000 steps would hold the warm-ups for a long part of the run
        r1_every=4,
        data_workers=1,
        pos_lambda=0.1,  # D_whole's camera gradient about twice its adversarial one at the start, not 10^3 times
        real_pos_lambda=0.1,
        imitation_points=512,  # half the default: 6% of a CPU step, and still a sixth of the 3DMM's vertices per image
        imitation_lambda=1500.0,  # DeformNet: imitation gradient 2.4x the adversarial sum after the warm-up
        shape_prior_lambda=1.0,
        sample_every=500,
        checkpoint_every=250,
        snapshot_metrics=64,
    ),
    "sshq512": TrainConfig(model="sshq512", total_steps=100_000, sample_every=1000, checkpoint_every=1000),
}
