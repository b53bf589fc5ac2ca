"""Training configuration: one frozen dataclass holding a run's generator sizes, every setting and every loss weight.

A run's config has three sections, as ``config.json``, the YAML presets and ``--set`` spell them: ``generator`` (a
:class:`aniportrait.config.GeneratorConfig`), ``rendering`` (a :class:`aniportrait.config.RenderingConfig`: how
the model's videos render by default; the run writes it into its generator checkpoints) and ``training`` (every
other field of :class:`TrainConfig`). The presets are YAML files in ``aniportrait/configs/`` (:func:`load_preset`);
``--config`` takes a preset's name or a YAML file of the same form, and ``--set generator.hidden_dim=96``,
``--set rendering.psi=0.5`` or ``--set training.lr_g=1e-4`` (or just ``lr_g=1e-4``) changes one value.

Every value the paper leaves open takes a predecessor's default or a measured choice of ours, named in its comment.
Sources: [P] AniPortraitGAN paper, [G] GRAM, [H] GRAM-HD, [A] AniFaceGAN, [ours] a choice of this project (the
measurements behind the ``small`` recipe are in docs/training/).

Values are checked when the config is built (``TrainConfig(...)``, ``with_overrides``, ``from_json``,
:func:`load_preset`), so a bad ``--set`` or preset fails before anything runs, with one line naming the key, the
value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from aniportrait.config import CONFIGS, DEFAULT_RENDERING, TINY, GeneratorConfig, RenderingConfig
from aniportrait.errors import UserInputError


class ConfigError(UserInputError):
    """A training setting that cannot be used; the message names the key, its value and what is allowed."""


@dataclass(frozen=True)
class TrainConfig:
    # -- the generator's sizes and the rendering defaults (the ``generator`` and ``rendering`` sections; every other
    # field is ``training``)
    generator: GeneratorConfig = TINY
    rendering: RenderingConfig = DEFAULT_RENDERING
    # -- schedule
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
    recon_face_weight: float = 1.0  # weight of the face view's L1 against the portrait's (1)
    recon_codes: str = "learned"  # their noise: "learned" (a code per image) or "prior" (fresh N(0, I) per render)
    recon_code_lr: float = 0.2  # their codes' learning rate: each code is updated only when its image is drawn
    recon_code_init: str = "random"  # their codes' start: N(0, I) draws, or "pca": the images' whitened components
    recon_code_sphere: bool = False  # keep each code at norm sqrt(z_noise_dim), where N(0, I) draws lie (GLO)
    # [ours] stage 1: every render lays the portrait's texels out a random fraction of a texel off the grid (and reads
    # them back at the same points), so that the field is fitted between the grid's texels too: the full-size
    # textures of generator.field_hr_textures sample it there (docs/training/README.md, section 17)
    texel_jitter: bool = False
    # [ours] stage 1, generator.field_hr_textures: the reconstruction also fits a random recon_window x recon_window
    # window of the full-size frame (rendered as a frame is, from the fine texels the window reads) against the image
    # at full size, weighted by recon_window_weight (0 = off; docs/training/README.md, section 20)
    recon_window: int = 0
    recon_window_weight: float = 1.0
    # [ours] where the window is drawn: "frame" (uniformly) or "figure" (in proportion to the figure's share of its
    # pixels, so that the fit spends no window on white background; docs/training/README.md, section 21)
    recon_window_on: str = "frame"
    # [ours] stage 1, generator.field_hr_textures: the reconstruction also fits the face view as evaluation renders it
    # from the full-size model (stage 2's face: traced at a quarter of its side, upsampled, looked up in the fine
    # textures) against the face image at that side, weighted by recon_hr_face_weight (0 = off; docs/training/README.md,
    # section 21)
    recon_hr_face_weight: float = 0.0
    # [ours] each view's L1 in both fits also weighs, by this factor, the L1 of its differences between neighbouring
    # pixels (the image-gradient loss), which a blurred render pays at every edge it smooths (0 = off;
    # docs/training/README.md, section 32)
    recon_gradient_weight: float = 0.0
    # [ours] both fits end at an exponential moving average of their iterates with this decay instead of their last
    # iterate (0 = off, the last iterate; docs/training/README.md, section 25)
    recon_ema: float = 0.0
    # [ours] their generator learning rate over the fit: "constant" (recon_lr throughout) or "cosine" (from recon_lr at
    # the first step to 0 after the last; docs/training/README.md, section 25)
    recon_lr_schedule: str = "constant"
    # [ours] stage 1, generator.field_hr_textures: the face view reads the fine textures at its intersections (as a
    # full-size frame does) instead of evaluating the field there, so that it puts the face where the portrait's
    # lookups and the full-size frames show it (docs/training/README.md, section 20)
    face_textures: bool = False
    # [ours] stage 1: the face view evaluates the field where the portrait's texture lookups show its intersections
    # (x and y scaled by N / (N - 1) about the box's centre), which puts the face where face_textures does at the
    # cost of the plain face view (docs/training/README.md, section 24)
    face_at_lookup: bool = False
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
    # [ours] the share of those surface points drawn from the active expression coefficients' own regions rather than
    # uniformly (train/imitation.py): in the small preset's deformation warm-up (1,500 steps) DeformNet then follows
    # 0.49-0.58 of the smile and 0.47-0.60 of the eye closure instead of 0.01 and 0.25-0.28, the mouth and brows as
    # before; at 0.75 the open mouth loses a third (docs/training/README.md, section 29)
    imitation_region_share: float = 0.5
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
    checkpoint_every: int = 200  # [ours] steps between checkpoints, in the adversarial phase and in each warm-up
    snapshot_metrics: int = 0  # [ours] renders per snapshot for the control and fidelity metrics (0 = off)
    impl: str = "auto"  # [ours] kernel implementation: auto, ref or triton

    def __post_init__(self) -> None:
        choices = {
            "stage": (1, 2),
            "pose_sampling": ("paired", "independent"),
            "recon_codes": ("learned", "prior"),
            "recon_code_init": ("random", "pca"),
            "recon_window_on": ("frame", "figure"),
            "recon_lr_schedule": ("constant", "cosine"),
            "impl": ("auto", "ref", "triton"),
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(
                    f"{key}={getattr(self, key)!r} is not allowed; use one of {', '.join(map(str, allowed))}"
                )
        for f in _training_fields():
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
        if self.stage == 2 and self.texel_jitter:
            raise ConfigError("texel_jitter moves the low-resolution texels of stage 1; set it only with stage=1")
        if self.recon_window and (self.stage != 1 or not self.generator.field_hr_textures):
            raise ConfigError(
                "recon_window fits the full-size frame of a field_hr_textures model in stage 1; set it only with "
                "stage=1 and generator.field_hr_textures=true"
            )
        if self.recon_hr_face_weight and (self.stage != 1 or not self.generator.field_hr_textures):
            raise ConfigError(
                "recon_hr_face_weight fits the full-size face of a field_hr_textures model in stage 1; set it only "
                "with stage=1 and generator.field_hr_textures=true"
            )
        if self.face_textures and (self.stage != 1 or not self.generator.field_hr_textures):
            raise ConfigError(
                "face_textures makes the stage-1 face view read a field_hr_textures model's fine textures; set it "
                "only with stage=1 and generator.field_hr_textures=true"
            )
        if self.face_at_lookup and (self.stage != 1 or self.face_textures):
            raise ConfigError(
                "face_at_lookup moves the points at which the stage-1 face view evaluates the field; set it only with "
                "stage=1 and without face_textures (which reads the fine textures instead)"
            )
        if self.face_at_lookup and self.generator.texel_centres:
            raise ConfigError(
                "face_at_lookup does nothing with generator.texel_centres=true (every lookup already shows the field "
                "where it is); leave face_at_lookup off"
            )
        if self.recon_window > self.generator.hr_img_size:
            raise ConfigError(
                f"recon_window={self.recon_window} exceeds the full-size frame ({self.generator.hr_img_size}); "
                "use a smaller window"
            )
        if self.stage == 2 and self.generator.field_hr_textures:
            raise ConfigError(
                "stage=2 trains super-resolution, which a generator with field_hr_textures does not use; "
                "train it in stage 1 only, or set generator.field_hr_textures=false"
            )

    @property
    def model(self) -> str:
        """The name of the generator preset this run's sizes equal, or "custom"."""
        return next((name for name, config in CONFIGS.items() if config == self.generator), "custom")

    def to_dict(self) -> dict:
        """The nested form: {"generator": {...}, "rendering": {...}, "training": {...}}."""
        training = {f.name: getattr(self, f.name) for f in _training_fields()}
        return {
            "generator": dataclasses.asdict(self.generator),
            "rendering": dataclasses.asdict(self.rendering),
            "training": training,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def value(self, key: str):
        """The value of a dotted key (``generator.hidden_dim``, ``rendering.psi``, ``training.lr_g`` or ``lr_g``)."""
        section, name = _split_key(key)
        return getattr(self if section == "training" else getattr(self, section), name)

    def with_values(self, values: dict) -> TrainConfig:
        """A copy with ``{dotted key: typed value}`` applied (the output of :func:`parse_overrides`)."""
        sections = {"generator": {}, "rendering": {}, "training": {}}
        for key, value in values.items():
            section, name = _split_key(key)
            sections[section][name] = value
        training = sections["training"]
        if sections["generator"]:
            training["generator"] = _generator(self.generator, sections["generator"])
        if sections["rendering"]:
            training["rendering"] = _rendering({**dataclasses.asdict(self.rendering), **sections["rendering"]})
        return dataclasses.replace(self, **training)

    def with_overrides(self, overrides: list[str] | tuple[str, ...]) -> TrainConfig:
        """Apply ``key=value`` strings, typed by the field (``--set lr_g=1e-4 --set generator.hidden_dim=96``)."""
        return self.with_values(parse_overrides(overrides))

    def changed_keys(self, other: TrainConfig) -> list[str]:
        """Keys whose values differ from ``other``'s, sorted: training fields by name, generator and rendering
        fields as ``generator.NAME`` and ``rendering.NAME``."""
        keys = [f.name for f in _training_fields() if getattr(self, f.name) != getattr(other, f.name)]
        for section in ("generator", "rendering"):
            mine, theirs = getattr(self, section), getattr(other, section)
            keys += [
                f"{section}.{f.name}"
                for f in dataclasses.fields(mine)
                if getattr(mine, f.name) != getattr(theirs, f.name)
            ]
        return sorted(keys)

    @classmethod
    def from_dict(cls, data) -> TrainConfig:
        """Build from the nested form; values not given keep their defaults.

        ``generator`` is a preset name, or a mapping of generator fields over the preset its ``preset`` key names
        (default ``tiny``); ``rendering`` a mapping of rendering fields (the rest keep their defaults). A flat
        mapping of training fields with a ``model`` preset name (run folders written before the config had
        sections) is read too. Unknown keys are refused.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"the training config must be a mapping with the sections {SECTIONS_TEXT}")
        if "training" not in data and "generator" not in data:
            data = {
                "generator": data.get("model", "tiny"),
                "training": {k: v for k, v in data.items() if k != "model"},
            }
        unknown = sorted(set(data) - set(SECTIONS))
        if unknown:
            raise ConfigError(f"unknown config sections: {', '.join(unknown)}; use {SECTIONS_TEXT}")
        training = data.get("training") or {}
        if not isinstance(training, dict):
            raise ConfigError("the config's training section must be a mapping of training settings")
        names = {f.name for f in _training_fields()}
        unknown = sorted(set(training) - names)
        if unknown:
            raise ConfigError(f"unknown training config keys: {', '.join(unknown)}")
        values = dict(training)
        if "generator" in data:
            values["generator"] = _generator_section(data["generator"])
        if "rendering" in data:
            values["rendering"] = _rendering(data["rendering"] or {})
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"the training config is not valid JSON ({err})") from None
        return cls.from_dict(data)


SECTIONS = ("generator", "rendering", "training")
SECTIONS_TEXT = "generator, rendering and training"


def _training_fields() -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(TrainConfig) if f.name not in ("generator", "rendering")]


def _split_key(key: str) -> tuple[str, str]:
    """``generator.X`` -> ("generator", X), likewise ``rendering.X``; ``training.X`` or ``X`` -> ("training", X)."""
    section, dot, name = key.partition(".")
    return (section, name) if dot else ("training", key)


def _rendering(section) -> RenderingConfig:
    """A config's ``rendering`` section: a mapping of rendering fields over the defaults."""
    try:
        return RenderingConfig.from_dict(section)
    except (ValueError, TypeError) as err:
        raise ConfigError(str(err)) from None


def _generator(base: GeneratorConfig, values: dict) -> GeneratorConfig:
    try:
        return GeneratorConfig.from_dict({**dataclasses.asdict(base), **values})
    except (ValueError, TypeError) as err:
        raise ConfigError(str(err)) from None


def _generator_section(section) -> GeneratorConfig:
    """A config's ``generator`` section: a preset name, or fields over the preset named by ``preset``."""
    if isinstance(section, str):
        section = {"preset": section}
    if not isinstance(section, dict):
        raise ConfigError("the config's generator section must be a preset name or a mapping of generator fields")
    values = dict(section)
    name = values.pop("preset", "tiny")
    if name not in CONFIGS:
        raise ConfigError(f"unknown generator preset {name!r}; use one of {', '.join(CONFIGS)}")
    return _generator(CONFIGS[name], values)


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
    "recon_face_weight": (0.0, 1000.0, False, False),
    "recon_window": (0, 4096, False, False),
    "recon_window_weight": (0.0, 1000.0, False, False),
    "recon_hr_face_weight": (0.0, 1000.0, False, False),
    "recon_gradient_weight": (0.0, 1000.0, False, False),
    "recon_ema": (0.0, 1.0, False, True),
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
    "imitation_region_share": (0.0, 1.0, False, False),
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
    *(f"rendering.{f.name}" for f in dataclasses.fields(RenderingConfig)),
)


def _describe(lo, hi, lo_open: bool, hi_open: bool) -> str:
    if hi is None:
        return f"{'(' if lo_open else '['}{lo}, infinity)"
    return f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> dict:
    """``["key=value", ...]`` -> {key: typed value}, typed by the field; unknown keys refused.

    A key is ``generator.NAME`` (a generator field), ``rendering.NAME`` (a rendering field), ``training.NAME`` or a
    bare training field ``NAME``; the result keys are ``generator.NAME``, ``rendering.NAME`` and bare training names.
    """
    fields_of = {
        "generator": {f.name: f for f in dataclasses.fields(GeneratorConfig)},
        "rendering": {f.name: f for f in dataclasses.fields(RenderingConfig)},
        "training": {f.name: f for f in _training_fields()},
    }
    values = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        section, name = _split_key(key.strip())
        fields = fields_of.get(section, {})
        if not sep or name not in fields:
            known = ", ".join(sorted(fields_of["training"]))
            raise ConfigError(
                f"bad --set {item!r}: expected key=value with key one of {known}, training.NAME, "
                "generator.NAME (a field of the generator config) or rendering.NAME (a rendering setting)"
            )
        kind = type(fields[name].default)
        value = _parse(key.strip(), raw.strip(), kind)
        values[name if section == "training" else f"{section}.{name}"] = value
    return values


def _parse(key: str, raw: str, kind: type, what: str = "--set"):
    try:
        if kind is tuple:
            return tuple(int(x) for x in raw.strip("()[] ").split(","))
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
        expected = "comma-separated positive integers" if kind is tuple else f"a finite {kind.__name__}"
        raise ConfigError(f"bad {what} {key}={raw}: expected {expected}") from None


# Discriminator width when d_max_channels is 0: [G] 400 for the release's 512-pixel model; [ours] 32 below it. At
# 128 the three discriminators had 3.0 M parameters against the small generator's 150 k trainable ones and took
# half of a CPU step; 32 channels take 14% less time than 64 (docs/training/README.md).
def default_d_max_channels(generator: GeneratorConfig) -> int:
    return 400 if generator.hr_img_size >= 512 else 32


PRESET_NAMES = ("tiny", "small", "sshq512")  # the YAML files of aniportrait/configs/


def load_preset(name_or_file: str | Path) -> TrainConfig:
    """A preset by name (``tiny``, ``small``, ``sshq512``) or a YAML file of the same form: a ``generator`` section
    (a generator preset's name, or a mapping of generator fields over the preset its ``preset`` key names), an
    optional ``rendering`` section (rendering fields) and a ``training`` section (training fields; the rest keep
    :class:`TrainConfig`'s defaults). Unknown keys refused."""
    import yaml

    if str(name_or_file) in PRESET_NAMES:
        where = f"preset {name_or_file}"
        text = (resources.files("aniportrait") / "configs" / f"{name_or_file}.yaml").read_text()
    else:
        path = Path(name_or_file)
        where = str(path)
        if not path.is_file():
            raise ConfigError(
                f"--config {name_or_file}: not a preset ({', '.join(PRESET_NAMES)}) and no such file; give a preset "
                "name or a YAML file with generator, rendering and training sections"
            )
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"--config {path}: cannot be read ({err})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        problem = str(err).replace("\n", " ")
        raise ConfigError(f"--config {where}: not valid YAML ({problem})") from None
    if not isinstance(data, dict) or not set(data) <= set(SECTIONS):
        raise ConfigError(f"--config {where}: expected a mapping with the sections {SECTIONS_TEXT} only")
    training = data.get("training") or {}
    try:
        if isinstance(training, dict):
            # YAML reads 2e-5 (no dot) as a string: type such values by their field, as --set does.
            kinds = {f.name: type(f.default) for f in _training_fields()}
            training = {
                k: _parse(f"training.{k}", v, kinds[k], "value")
                if isinstance(v, str) and kinds.get(k, str) is not str
                else v
                for k, v in training.items()
            }
        sections = {"generator": data.get("generator", "tiny"), "training": training}
        if "rendering" in data:
            sections["rendering"] = data["rendering"]
        return TrainConfig.from_dict(sections)
    except ConfigError as err:
        raise ConfigError(f"--config {where}: {err}") from None


PRESETS = {name: load_preset(name) for name in PRESET_NAMES}
