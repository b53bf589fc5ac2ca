"""The labels of synthetic figures: their ranges, the :class:`Figures` that hold them, and their sampling.

A figure's labels are what a dataset made by :func:`aniportrait.data.synth.synthesize` records (camera, pose, betas,
id, expression) plus the appearance the id encodes; :mod:`aniportrait.data.synth_scene` turns them into a scene and
:mod:`aniportrait.data.synth_render` renders it.

Appearance and the identity label
    Per image: skin tone, hair colour, hair style (short, long, bun, buzz) and volume, shirt colour and neckline (crew,
    V), iris colour and lip tint. ``id`` [80] encodes them (:data:`ID_LAYOUT`): the first 18 coefficients are a
    deterministic affine code of the attributes, the remaining 62 small noise (std :data:`ID_NOISE`).

Expression (``expression`` [64], 0 = neutral)
    Only the first four coefficients act, with the meanings of ``models.face3dmm.EXPRESSION_MEANING``; the rest are
    small noise (std :data:`EXPRESSION_NOISE`) without effect:

    - ``e[0]`` mouth open: ``clip(e0 / 1.5, 0, 1)`` drops the jaw and opens a dark mouth between the lips;
    - ``e[1]`` smile (> 0) / frown (< 0): mouth corners up (down) and a wider mouth, ``clip(e1, -1, 1.5)``;
    - ``e[2]`` eyes closed: aperture ``clip(1 - e2, 0, 1.3)`` of the normal height; 1 closes the eyes (blink),
      negative values widen them;
    - ``e[3]`` brows raised (> 0) / lowered (< 0): brows move up by ``0.009 * clip(e3, -1, 1)`` canonical units.

Determinism: the labels of figure i come from ``numpy.random.default_rng([seed, i])`` (independent of n and batching).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np

__all__ = [
    "EXPRESSION_EFFECTS",
    "Figures",
    "sample_figures",
]

# ---------------------------------------------------------------------------------------------------------------------
# Label ranges (radians unless noted). Offsets are uniform in [-r, r] per (joint, Z/Y/X angle).

CAMERA_PITCH_RANGE = 0.2  # pitch = pi/2 + U(-r, r)
CAMERA_YAW_RANGE = 0.5  # yaw = pi/2 + U(-r, r); the release's data spans about this
# Per pose joint (12 neck, 13 L-collar, 14 R-collar, 15 head, 16 L-shoulder, 17 R-shoulder): (about Z, Y, X).
POSE_RANGES = (
    (0.10, 0.25, 0.20),  # neck: roll, turn, nod
    (0.15, 0.15, 0.10),  # left collar: shrug, forward/back, twist
    (0.15, 0.15, 0.10),  # right collar
    (0.15, 0.40, 0.30),  # head: roll, turn, nod (with the neck up to 0.25 / 0.65 / 0.5)
    (0.30, 0.30, 0.20),  # left shoulder: raise/lower, forward/back, twist
    (0.30, 0.30, 0.20),  # right shoulder
)
BETA_STD = 0.7  # betas ~ N(0, BETA_STD^2), clipped to +-BETA_CLIP
BETA_CLIP = 2.0
EXPRESSION_RANGES = ((-0.3, 1.8), (-1.0, 1.5), (-0.6, 1.0), (-1.0, 1.0))  # uniform ranges of e[0..3]
EXPRESSION_NOISE = 0.05  # std of e[4:], which have no effect
EXPRESSION_EFFECTS = {
    0: "mouth open: clip(e0 / 1.5, 0, 1) drops the jaw and opens the mouth",
    1: "smile (> 0) / frown (< 0): mouth corners up / down, wider mouth; clip(e1, -1, 1.5)",
    2: "eyes closed: eye aperture clip(1 - e2, 0, 1.3) of the normal height; 1 = closed (blink), < 0 widens",
    3: "brows raised (> 0) / lowered (< 0): brows up by 0.009 * clip(e3, -1, 1) canonical units",
}

# Identity label layout: name -> slice of id [80]; every entry is an affine code of the attribute in about [-1, 1].
ID_LAYOUT = {
    "skin_tone": slice(0, 1),  # 2 t - 1, t = 0 light ... 1 dark
    "hair_rgb": slice(1, 4),  # 2 rgb - 1
    "hair_style": slice(4, 8),  # one-hot (short, long, bun, buzz) as +-1
    "hair_volume": slice(8, 9),  # (v - 1.10) / 0.05
    "shirt_rgb": slice(9, 12),  # 2 rgb - 1
    "neckline": slice(12, 13),  # -1 crew, +1 V
    "iris_rgb": slice(13, 16),  # 2 rgb - 1
    "lip_tint": slice(16, 17),  # (l - 0.9) / 0.1
    "skin_rgb_shift": slice(17, 18),  # redness jitter of the skin, in [-1, 1]
}
ID_CODED = 18
ID_NOISE = 0.05  # std of id[18:]
HAIR_STYLES = ("short", "long", "bun", "buzz")
NECKLINES = ("crew", "v")

# Palettes (linear-ish RGB in [0, 1]).
HAIR_COLOURS = (
    (0.08, 0.07, 0.07),
    (0.22, 0.14, 0.09),
    (0.42, 0.28, 0.16),
    (0.85, 0.72, 0.45),
    (0.60, 0.25, 0.12),
    (0.70, 0.70, 0.70),
)  # black, dark brown, brown, blonde, red, grey
IRIS_COLOURS = ((0.35, 0.20, 0.10), (0.30, 0.45, 0.70), (0.30, 0.50, 0.30), (0.15, 0.10, 0.07))
HAIR_VOLUME = (1.05, 1.15)  # hair cap scale relative to the skull (buzz cut: BUZZ_VOLUME)
BUZZ_VOLUME = 1.025


# ---------------------------------------------------------------------------------------------------------------------
# Sampling


@dataclass
class Figures:
    """Labels and appearance of N figures (numpy, float32 unless noted). Index, slice or edit fields to re-render."""

    camera: np.ndarray  # [N, 2] (pitch, yaw)
    pose: np.ndarray  # [N, 6, 3]
    betas: np.ndarray  # [N, 10]
    expression: np.ndarray  # [N, 64]
    skin_tone: np.ndarray  # [N]
    skin_shift: np.ndarray  # [N] redness jitter in [-1, 1]
    hair_rgb: np.ndarray  # [N, 3]
    hair_style: np.ndarray  # [N] int64, index into HAIR_STYLES
    hair_volume: np.ndarray  # [N]
    shirt_rgb: np.ndarray  # [N, 3]
    neckline: np.ndarray  # [N] int64, index into NECKLINES
    iris_rgb: np.ndarray  # [N, 3]
    lip_tint: np.ndarray  # [N]
    id_noise: np.ndarray  # [N, 80 - ID_CODED]

    def __len__(self) -> int:
        return len(self.camera)

    def __getitem__(self, index) -> Figures:
        index = [index] if isinstance(index, (int, np.integer)) else index
        return Figures(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def with_(self, **changes) -> Figures:
        """A copy with some fields replaced (arrays are broadcast to the field's shape)."""
        out = {}
        for key, value in changes.items():
            old = getattr(self, key)
            out[key] = np.broadcast_to(np.asarray(value, dtype=old.dtype), old.shape).copy()
        return replace(self, **out)

    @property
    def id(self) -> np.ndarray:
        """[N, 80] float32 identity label: the attribute code (ID_LAYOUT) followed by the noise."""
        n = len(self)
        code = np.zeros((n, ID_CODED), np.float32)
        code[:, ID_LAYOUT["skin_tone"]] = 2 * self.skin_tone[:, None] - 1
        code[:, ID_LAYOUT["hair_rgb"]] = 2 * self.hair_rgb - 1
        code[:, ID_LAYOUT["hair_style"]] = 2 * np.eye(len(HAIR_STYLES), dtype=np.float32)[self.hair_style] - 1
        code[:, ID_LAYOUT["hair_volume"]] = (self.hair_volume[:, None] - 1.10) / 0.05
        code[:, ID_LAYOUT["shirt_rgb"]] = 2 * self.shirt_rgb - 1
        code[:, ID_LAYOUT["neckline"]] = 2 * self.neckline[:, None] - 1
        code[:, ID_LAYOUT["iris_rgb"]] = 2 * self.iris_rgb - 1
        code[:, ID_LAYOUT["lip_tint"]] = (self.lip_tint[:, None] - 0.9) / 0.1
        code[:, ID_LAYOUT["skin_rgb_shift"]] = self.skin_shift[:, None]
        return np.concatenate([code, self.id_noise], axis=1).astype(np.float32)

    def labels(self) -> dict[str, np.ndarray]:
        """The format's label arrays (camera, pose, betas, id, expression), float32."""
        return {
            "camera": self.camera.astype(np.float32),
            "pose": self.pose.astype(np.float32),
            "betas": self.betas.astype(np.float32),
            "id": self.id,
            "expression": self.expression.astype(np.float32),
        }


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    k = (np.array([5.0, 3.0, 1.0]) + h * 6.0) % 6.0
    return v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def _sample_one(rng: np.random.Generator) -> dict[str, np.ndarray]:
    f32 = np.float32
    out = {
        "camera": np.array(
            [
                math.pi / 2 + rng.uniform(-CAMERA_PITCH_RANGE, CAMERA_PITCH_RANGE),
                math.pi / 2 + rng.uniform(-CAMERA_YAW_RANGE, CAMERA_YAW_RANGE),
            ],
            f32,
        ),
        "pose": (rng.uniform(-1.0, 1.0, (6, 3)) * np.array(POSE_RANGES)).astype(f32),
        "betas": np.clip(rng.normal(0.0, BETA_STD, 10), -BETA_CLIP, BETA_CLIP).astype(f32),
    }
    expression = rng.normal(0.0, EXPRESSION_NOISE, 64)
    for i, (lo, hi) in enumerate(EXPRESSION_RANGES):
        expression[i] = rng.uniform(lo, hi)
    out["expression"] = expression.astype(f32)
    hair = np.array(HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))]) + rng.uniform(-0.04, 0.04, 3)
    style = rng.integers(len(HAIR_STYLES))
    out.update(
        skin_tone=f32(rng.uniform()),
        skin_shift=f32(rng.uniform(-1.0, 1.0)),
        hair_rgb=np.clip(hair, 0.0, 1.0).astype(f32),
        hair_style=np.int64(style),
        hair_volume=f32(BUZZ_VOLUME if HAIR_STYLES[style] == "buzz" else rng.uniform(*HAIR_VOLUME)),
        shirt_rgb=_hsv_to_rgb(rng.uniform(), rng.uniform(0.2, 0.9), rng.uniform(0.25, 0.95)).astype(f32),
        neckline=np.int64(rng.integers(len(NECKLINES))),
        iris_rgb=np.clip(
            np.array(IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))]) + rng.uniform(-0.03, 0.03, 3), 0.0, 1.0
        ).astype(f32),
        lip_tint=f32(rng.uniform(0.8, 1.0)),
        id_noise=rng.normal(0.0, ID_NOISE, 80 - ID_CODED).astype(f32),
    )
    return out


def sample_figures(seed: int, count: int, start: int = 0) -> Figures:
    """Figures ``start .. start + count - 1`` of the dataset with this seed (figure i uses rng([seed, i]))."""
    rows = [_sample_one(np.random.default_rng([int(seed), i])) for i in range(start, start + count)]
    return Figures(**{f.name: np.stack([r[f.name] for r in rows]) for f in fields(Figures)})
