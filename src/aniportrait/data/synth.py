"""A synthetic head-and-shoulders dataset in the on-disk format, rendered fast from a procedural figure.

``aniportrait data synth`` uses :func:`synthesize` to write a dataset (:mod:`aniportrait.data.format`) whose labels
are exact by construction, so the whole training pipeline can run and be tested without SHHQ-HS.

The figure
    A union of ellipsoids attached to the bones of the procedural SMPL-layout rig (:func:`~aniportrait.models.rig.
    procedural_rig`): torso (trunk, joints 0-9), neck (J12), head with skull, jaw, nose, ears and hair (J15), left and
    right trapezius (collars J13/J14), and deltoid + upper-arm stubs (shoulders J16/J17, towards the elbows J18/J19).
    The rig gives the mean-pose joints for the sampled betas (``BodyModel.joints``, one SMPL call per batch); each part
    is defined in that mean-pose canonical frame and moved by its bone's chain transform for the sampled pose
    (``R(E)`` about the joints, as in the release's ``run_model_lbs``). So the pose label is the figure's actual pose.

Shape (``betas``)
    The joints respond to betas through the rig (size, shoulder width and height, neck length move joints); part
    sizes follow the rig's shape directions with its own scales (``RIG_BETA_SCALES``): beta 0 size scales every part,
    2 head size and 6 face length (longer, narrower) scale the head about the face centre, 4 chest depth and 5 waist
    width the torso, 7 the neck thickness, 8 the upper-arm thickness.

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

Cameras
    Portraits use the portrait camera's exact conventions (:mod:`aniportrait.cameras`): origin
    ``camera_origin(pitch, yaw)`` shifted by ``ORIGIN_OFFSET`` (as ``portrait_rays``), rotation
    ``look_at_rotation``, 12 degree fov, pixel centres at NDC +-1, row 0 at the top. Face crops use
    :func:`~aniportrait.cameras.face_camera` attached to the posed head, looking at the face centre from the
    portrait camera's direction (an aligned crop of the portrait's face, without head roll), with the constant
    ``FACE_CENTER_OFFSET`` that the generator's training face camera uses too (exact here for every shape, as the
    head scales about the face centre).

Rendering
    Analytic ray casting, vectorised over a batch of images in torch. The ray ``o + t (x e_x + y e_y + e_z)`` through
    pixel (x, y) meets ellipsoid k where ``|o' + t d'|^2 = 1`` in its unit-sphere frame; ``a = |d'|^2``,
    ``b = o'.d'`` and the discriminant ``b^2 - a (|o'|^2 - 1)`` are quadratics in (x, y) whose coefficients are
    computed per ellipsoid in float64. The discriminant's conic bounds the ellipsoid's silhouette, so each ellipsoid is
    tested only in the TILE x TILE pixel tiles its bounding box meets; per tile the quadratics are re-centred on the
    tile corner (float64, so no cancellation is left) and evaluated in float32 by one GEMM with the tile-local
    monomials. A deterministic scatter-min of (t bits, part id) keys picks the nearest hit. Shading works on the hit
    pixels only: ellipsoid normals, eyes, brows, mouth and the neckline painted in the head's (trunk's) local frame,
    Lambert shading with a fixed world light plus ambient, white background like the release's renders.
    ``SUPERSAMPLE`` x ``SUPERSAMPLE`` samples per pixel antialias the edges.

Determinism: labels of image i come from ``numpy.random.default_rng([seed, i])`` (independent of n and batching);
rendering is plain float32 torch on the CPU in fixed batches, and ``labels.npz`` is written with fixed zip
timestamps, so a run is bitwise reproducible on a machine.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from aniportrait import cameras, constants
from aniportrait.data import format as fmt
from aniportrait.data.dataset import DatasetError
from aniportrait.geometry import euler_zyx_to_matrix
from aniportrait.models.body import BodyModel
from aniportrait.models.rig import RIG_BETA_SCALES
from aniportrait.userfiles import output_folder_problem

__all__ = [
    "EXPRESSION_EFFECTS",
    "PART",
    "Figures",
    "render_figures",
    "sample_figures",
    "synthesize",
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
MOUTH_OPEN_FULL = 1.5  # e0 that opens the mouth fully

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
SKIN_LIGHT = (0.96, 0.80, 0.69)
SKIN_DARK = (0.36, 0.23, 0.16)
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
# Geometry, in canonical units. The head is modelled in its own nominal frame: the mean-pose canonical frame of the
# nominal rig, where the face centre is the origin and the face looks along +z.

M = 1.0 / (constants.SMPL_SCALE * constants.FACE_RADIUS)  # canonical units per SMPL metre (1 unit = 1.177 m)
HEAD_JOINT_NOMINAL = tuple(-c for c in cameras.FACE_CENTER_OFFSET)  # J15 in the head's nominal frame
SKULL = ((0.0, 0.012, -0.060), (0.068, 0.088, 0.082))  # (centre, radii)
JAW = ((0.0, -0.036, -0.038), (0.056, 0.060, 0.062))
JAW_DROP = 0.012  # jaw moves down by this at a fully open mouth
NOSE = ((0.0, -0.018, 0.021), (0.011, 0.023, 0.014), -0.35)  # (centre, radii, tilt about x: tip forward)
EAR = ((0.066, -0.006, -0.066), (0.012, 0.025, 0.017))  # left ear; the right one is mirrored
HAIR_SHIFT = (0.0, 0.006, -0.004)  # hair cap centre relative to the skull's
HAIR_BACK = ((0.0, -0.085, -0.138), (0.078, 0.150, 0.040))  # long hair behind head and neck
BUN = ((0.0, 0.078, -0.115), (0.042, 0.042, 0.042))
# Hairline on the cap's unit sphere (u = local point): keep u_y > HAIRLINE_SIDE + rise(u_z), rising to the forehead
# at the front and falling to the nape at the back.
HAIRLINE_SIDE = -0.10
HAIRLINE_FRONT = 0.55  # added at u_z >= HAIRLINE_FRONT_Z
HAIRLINE_FRONT_Z = (0.15, 0.55)
HAIRLINE_BACK = -0.45  # added at u_z <= -HAIRLINE_BACK_Z[1]
HAIRLINE_BACK_Z = (0.25, 0.65)
# Face decals in the head's nominal frame (x, y) on its front (z > DECAL_MIN_Z).
DECAL_MIN_Z = -0.02
EYE = ((0.027, 0.004), (0.0125, 0.0062), 0.0052, 0.0020)  # (centre of the left eye, (rx, ry), iris r, pupil r)
LASH = 0.0011  # half thickness of the lash line drawn when the eye is (almost) closed
BROW = ((0.029, 0.024), 0.017, 0.0032, 0.004, 0.009)  # (centre, half length, half thickness, arch, raise per unit)
MOUTH = ((0.0, -0.052), 0.020, 0.0045, 0.010, 0.012, 0.010)  # (centre, half width, lip half height, open lip add,
#                                                              open cavity half height, smile corner lift)
# Body (relative to the mean-pose joints, canonical units).
NECK_RADIUS = 0.050
NECK_ENDS = ((0.0, -0.09, 0.008), (0.0, 0.05, 0.0))  # offsets of the neck ends from J12 and J15: long, so the
#                                                     visible middle is nearly cylindrical
TORSO_BELOW_NECK = 0.235  # torso centre below J12
TORSO_RADII = (0.93, 0.21, 0.080)  # (fraction of the shoulder joints' |x|, height, depth)
TORSO_Z = 0.004  # torso centre in front of J12
CHEST = ((0.0, -0.115, 0.018), (0.115, 0.075, 0.072))  # upper chest, relative to J12
TRAPEZIUS_INNER = (0.022, 0.008, -0.006)  # from J12 (x mirrored)
TRAPEZIUS_OUTER = (-0.010, 0.014, 0.0)  # from the shoulder joint (x mirrored)
TRAPEZIUS_RADII = (0.034, 0.058)  # (vertical, depth)
DELTOID_RADIUS = 0.048
DELTOID_ALONG = 0.4  # deltoid centre: this fraction of the way from the shoulder joint to the elbow
ARM_RADIUS = 0.043
ARM_EXTEND = 0.06  # the arm stub reaches past the elbow joint
NECKLINE_CREW = (0.062, 0.030, 0.028)  # (half width, depth at the edge, extra depth at the centre) below J12
NECKLINE_V = (0.07, 0.095, 1.25)  # (half width, depth at the centre, slope)

# Shading: a fixed world light from the front, upper left of the figure's right, plus ambient.
LIGHT = (-0.35, 0.55, 1.0)
AMBIENT = 0.42
DIFFUSE = 0.62
SUPERSAMPLE = 2  # render at SUPERSAMPLE x resolution and average (antialiasing)
BATCH = 16  # images per render batch
# Torch threads while synthesize() renders: one core renders, the others encode PNGs (zlib releases the GIL). This
# also keeps throughput steady on a busy machine, where multi-threaded small ops mostly wait on each other.
RENDER_THREADS = 1
PNG_WORKERS = 2
BACKGROUND = 1.0  # white

# Part ids (order of the ellipsoids) and decal ids of the part maps :func:`render_figures` can return.
PART_NAMES = (
    "torso",
    "chest",
    "trapezius_l",
    "trapezius_r",
    "deltoid_l",
    "deltoid_r",
    "arm_l",
    "arm_r",
    "neck",
    "skull",
    "jaw",
    "nose",
    "ear_l",
    "ear_r",
    "hair",
    "hair_back",
    "bun",
)
PART = {name: i for i, name in enumerate(PART_NAMES)}
PART.update({"background": -1, "eye": 100, "brow": 101, "mouth": 102, "neckline": 103})
HEAD_PARTS = ("skull", "jaw", "nose", "ear_l", "ear_r", "hair", "hair_back", "bun")
SHIRT_PARTS = ("torso", "chest", "trapezius_l", "trapezius_r", "deltoid_l", "deltoid_r", "arm_l", "arm_r")
SKIN_PARTS = ("neck", "skull", "jaw", "nose", "ear_l", "ear_r")
HAIR_PARTS = ("hair", "hair_back", "bun")


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


# ---------------------------------------------------------------------------------------------------------------------
# Scene construction (torch, batched)


@lru_cache(maxsize=1)
def _body() -> BodyModel:
    return BodyModel.procedural()


def _t(value, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(value, dtype=like.dtype)


def _segment(a: torch.Tensor, b: torch.Tensor, radius: torch.Tensor, extend: float = 0.0, depth: float = 1.0):
    """Ellipsoid around the segment a -> b [B, 3]: centre [B, 3] and L [B, 3, 3] (columns: scaled axes).

    ``radius`` [B] across the segment, times ``depth`` along the third axis (the one nearest world z).
    """
    axis = b - a
    length = axis.norm(dim=-1, keepdim=True)
    y = axis / length
    x = torch.nn.functional.normalize(torch.linalg.cross(y, _t((0.0, 0.0, 1.0), a).expand_as(y), dim=-1), dim=-1)
    z = torch.linalg.cross(x, y, dim=-1)
    half = length[:, 0] / 2 + extend
    centre = (a + b) / 2 + y * (extend / 2)
    return centre, torch.stack([x * radius[:, None], y * half[:, None], z * (depth * radius)[:, None]], dim=-1)


def _axis_ellipsoid(centre, radii, batch: int, like: torch.Tensor, tilt_x: float = 0.0):
    c = _t(centre, like).expand(batch, 3)
    rot = euler_zyx_to_matrix(_t((0.0, 0.0, tilt_x), like))
    return c, (rot * _t(radii, like)).expand(batch, 3, 3)


@dataclass
class _Scene:
    centre: torch.Tensor  # [B, P, 3] posed ellipsoid centres
    inverse: torch.Tensor  # [B, P, 3, 3] world -> unit-sphere frame (L^-1)
    albedo: torch.Tensor  # [B, P, 3]
    present: torch.Tensor  # [B, P] bool
    head_rotation: torch.Tensor  # [B, 3, 3] posed head (relative to the mean pose)
    head_position: torch.Tensor  # [B, 3] posed J15
    head_scale: torch.Tensor  # [B, 3] nominal head frame -> scaled head frame, about the face centre
    neck_joint: torch.Tensor  # [B, 3] J12 (static)
    features: dict  # expression amounts and decal colours, [B] / [B, 3]


def _build_scene(fig: Figures) -> _Scene:
    f32 = torch.float32
    betas = torch.from_numpy(fig.betas).to(f32)
    pose = torch.from_numpy(fig.pose).to(f32)
    expression = torch.from_numpy(fig.expression).to(f32)
    n = len(fig)
    with torch.no_grad():
        joints = _body().joints(betas, torch.zeros_like(pose))  # mean-pose joints for these betas
    scale = 1.0 + betas * _t(RIG_BETA_SCALES, betas)  # [B, 10] per-beta factors
    size = scale[:, 0]
    rot = euler_zyx_to_matrix(pose)  # [B, 6, 3, 3] for joints 12, 13, 14, 15, 16, 17
    j12, j13, j14, j15, j16, j17, j18, j19 = (joints[:, i] for i in (12, 13, 14, 15, 16, 17, 18, 19))

    def moved(rotation, rest, posed):
        return lambda c, L: (posed + torch.einsum("bij,bj->bi", rotation, c - rest), rotation @ L)

    head_rotation, head_position = cameras.posed_head_transform(pose, joints)
    collar_l, collar_r = rot[:, 1], rot[:, 2]
    shoulder_l, shoulder_r = collar_l @ rot[:, 4], collar_r @ rot[:, 5]
    j16p = j13 + torch.einsum("bij,bj->bi", collar_l, j16 - j13)
    j17p = j14 + torch.einsum("bij,bj->bi", collar_r, j17 - j14)
    identity = torch.eye(3).expand(n, 3, 3)
    bones = {
        "trunk": moved(identity, j12, j12),
        "neck": moved(rot[:, 0], j12, j12),
        "collar_l": moved(collar_l, j13, j13),
        "collar_r": moved(collar_r, j14, j14),
        "shoulder_l": moved(shoulder_l, j16, j16p),
        "shoulder_r": moved(shoulder_r, j17, j17p),
    }

    # Head: nominal frame -> per-identity scale about the face centre (the nominal origin, so the face centre stays at
    # cameras.FACE_CENTER_OFFSET from J15 for every shape, as the training face camera assumes) -> mean pose at this
    # J15 -> posed.
    face_len = scale[:, 6]
    head_scale = (size * scale[:, 2])[:, None] * torch.stack(
        [2.0 - torch.sqrt(face_len), face_len, torch.ones_like(face_len)], dim=-1
    )  # face length stretches y and narrows x a little (the rig's 0.5 narrowing, as a ratio)
    skull_c = _t(SKULL[0], betas)
    j15_nom = _t(HEAD_JOINT_NOMINAL, betas)

    def head_part(c, L):
        local_c = head_scale * c - j15_nom  # relative to J15, head's mean-pose frame
        return head_position + torch.einsum("bij,bj->bi", head_rotation, local_c), head_rotation @ (
            head_scale[:, :, None] * L
        )

    parts = {}
    # Trunk.
    shoulder_x = 0.5 * (j16[:, 0] - j17[:, 0])
    torso_r = torch.stack(
        [
            TORSO_RADII[0] * shoulder_x * (1.0 + 0.5 * (scale[:, 5] - 1.0)),
            TORSO_RADII[1] * size,
            TORSO_RADII[2] * size * scale[:, 4],
        ],
        dim=-1,
    )
    torso_c = j12 + torch.stack(
        [torch.zeros_like(size), -TORSO_BELOW_NECK * size, torch.full_like(size, TORSO_Z)], dim=-1
    )
    parts["torso"] = bones["trunk"](torso_c, torch.diag_embed(torso_r))
    chest_c, chest_r = CHEST
    chest_r = _t(chest_r, betas) * torch.stack([shoulder_x / 0.1486, size, size * scale[:, 4]], dim=-1)
    parts["chest"] = bones["trunk"](j12 + _t(chest_c, betas) * size[:, None], torch.diag_embed(chest_r))
    # Collars (trapezius) and shoulders (deltoid, upper arm).
    mirror = _t((-1.0, 1.0, 1.0), betas)
    for side, collar, shoulder, joint, elbow, sign in (
        ("l", "collar_l", "shoulder_l", j16, j18, 1.0),
        ("r", "collar_r", "shoulder_r", j17, j19, -1.0),
    ):
        flip = _t((1.0, 1.0, 1.0), betas) if sign > 0 else mirror
        inner = j12 + flip * _t(TRAPEZIUS_INNER, betas)
        outer = joint + flip * _t(TRAPEZIUS_OUTER, betas)
        parts[f"trapezius_{side}"] = bones[collar](
            *_segment(inner, outer, TRAPEZIUS_RADII[0] * size, depth=TRAPEZIUS_RADII[1] / TRAPEZIUS_RADII[0])
        )
        arm = scale[:, 8] * size
        deltoid = joint + DELTOID_ALONG * (elbow - joint)
        parts[f"deltoid_{side}"] = bones[shoulder](
            deltoid, torch.diag_embed((DELTOID_RADIUS * arm)[:, None].expand(n, 3))
        )
        parts[f"arm_{side}"] = bones[shoulder](*_segment(joint, elbow, ARM_RADIUS * arm, ARM_EXTEND))
    neck_r = NECK_RADIUS * size * scale[:, 7]
    parts["neck"] = bones["neck"](*_segment(j12 + _t(NECK_ENDS[0], betas), j15 + _t(NECK_ENDS[1], betas), neck_r))

    # Head parts in the nominal head frame.
    mouth_open = (expression[:, 0] / MOUTH_OPEN_FULL).clamp(0.0, 1.0)
    parts["skull"] = head_part(*_axis_ellipsoid(*SKULL, n, betas))
    jaw_c, jaw_L = _axis_ellipsoid(*JAW, n, betas)
    jaw_c = jaw_c - torch.stack([torch.zeros_like(mouth_open), JAW_DROP * mouth_open, torch.zeros_like(mouth_open)], -1)
    parts["jaw"] = head_part(jaw_c, jaw_L)
    parts["nose"] = head_part(*_axis_ellipsoid(*NOSE[:2], n, betas, tilt_x=NOSE[2]))
    parts["ear_l"] = head_part(*_axis_ellipsoid(*EAR, n, betas))
    parts["ear_r"] = head_part(*_axis_ellipsoid((-EAR[0][0],) + EAR[0][1:], EAR[1], n, betas))
    volume = torch.from_numpy(fig.hair_volume).to(f32)
    hair_c = skull_c + _t(HAIR_SHIFT, betas)
    parts["hair"] = head_part(hair_c.expand(n, 3), torch.diag_embed(_t(SKULL[1], betas) * volume[:, None]))
    parts["hair_back"] = head_part(*_axis_ellipsoid(*HAIR_BACK, n, betas))
    parts["bun"] = head_part(*_axis_ellipsoid(*BUN, n, betas))

    centre = torch.stack([parts[name][0] for name in PART_NAMES], dim=1)
    inverse = torch.linalg.inv(torch.stack([parts[name][1] for name in PART_NAMES], dim=1))

    # Colours.
    tone = torch.from_numpy(fig.skin_tone).to(f32)[:, None]
    skin = (1 - tone) * _t(SKIN_LIGHT, betas) + tone * _t(SKIN_DARK, betas)
    skin = skin * (1.0 + 0.05 * torch.from_numpy(fig.skin_shift).to(f32)[:, None] * _t((1.0, -0.5, -0.5), betas))
    hair = torch.from_numpy(fig.hair_rgb).to(f32)
    shirt = torch.from_numpy(fig.shirt_rgb).to(f32)
    albedo = torch.zeros(n, len(PART_NAMES), 3)
    for name in SHIRT_PARTS:
        albedo[:, PART[name]] = shirt
    for name in SKIN_PARTS:
        albedo[:, PART[name]] = skin
    for name in HAIR_PARTS:
        albedo[:, PART[name]] = hair
    albedo[:, PART["neck"]] = skin * 0.93  # the neck sits a little in the shade of the head
    style = torch.from_numpy(fig.hair_style)
    present = torch.ones(n, len(PART_NAMES), dtype=torch.bool)
    present[:, PART["hair_back"]] = style == HAIR_STYLES.index("long")
    present[:, PART["bun"]] = style == HAIR_STYLES.index("bun")
    if (style == HAIR_STYLES.index("buzz")).any():
        albedo[style == HAIR_STYLES.index("buzz"), PART["hair"]] = (0.55 * hair + 0.45 * skin)[
            style == HAIR_STYLES.index("buzz")
        ]

    features = {
        "mouth_open": mouth_open,
        "smile": expression[:, 1].clamp(-1.0, 1.5),
        "eye_open": (1.0 - expression[:, 2]).clamp(0.0, 1.3),
        "brow": expression[:, 3].clamp(-1.0, 1.0),
        "skin": skin,
        "hair": hair,
        "iris": torch.from_numpy(fig.iris_rgb).to(f32),
        "lips": skin * _t((1.0, 0.62, 0.62), betas) * torch.from_numpy(fig.lip_tint).to(f32)[:, None],
        "neckline": torch.from_numpy(fig.neckline),
    }
    return _Scene(centre, inverse, albedo, present, head_rotation, head_position, head_scale, j12, features)


# ---------------------------------------------------------------------------------------------------------------------
# Ray casting


TILE = 8  # ray casting works on TILE x TILE pixel tiles; each ellipsoid is tested only in tiles its silhouette meets
_KEY_PART_BITS = 8  # nearest-hit keys: float32 bits of t << 8 | part id (t > 0, so the bits sort like t)


def _smoothstep(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    t = ((x - lo) / (hi - lo)).clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _shift(coef: torch.Tensor, x0: torch.Tensor, y0: torch.Tensor) -> torch.Tensor:
    """Quadratics [..., 6] over (x^2, y^2, xy, x, y, 1) re-expressed in (s, r) = (x - x0, y - y0); x0, y0 [...]."""
    a, b, c, d, e, f = coef.unbind(-1)
    x0, y0 = x0.expand_as(a), y0.expand_as(a)
    return torch.stack(
        [
            a,
            b,
            c,
            2 * a * x0 + c * y0 + d,
            2 * b * y0 + c * x0 + e,
            a * x0 * x0 + b * y0 * y0 + c * x0 * y0 + d * x0 + e * y0 + f,
        ],
        dim=-1,
    )


def _conic_range(q: torch.Tensor, axis: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Extent along x (axis 0) or y (1) of the ellipse {q >= 0}; returns (lo, hi, bounded) [...] (float64)."""
    a, b, c, d, e, f = q.unbind(-1)
    if axis == 1:  # swap the roles of x and y
        a, b, d, e = b, a, e, d
    k2 = c * c - 4 * a * b
    k1 = 2 * c * e - 4 * b * d
    k0 = e * e - 4 * b * f
    bounded = (a < 0) & (b < 0) & (k2 < 0)
    disc = k1 * k1 - 4 * k2 * k0
    root = disc.clamp_min(0.0).sqrt()
    lo, hi = (-k1 + root) / (2 * k2), (-k1 - root) / (2 * k2)  # k2 < 0: this order gives lo <= hi
    empty = bounded & (disc < 0)
    return torch.where(empty, torch.inf, lo), torch.where(empty, -torch.inf, hi), bounded


def _cast(scene: _Scene, origin: torch.Tensor, rotation: torch.Tensor, fov_degrees: float, res: int):
    """Ray-cast the scene from cameras (origin [B, 3], camera-to-world rotation [B, 3, 3]) at res x res pixels.

    Returns the ray parameter t [B, P] of the nearest hit along ``origin + t (x e_x + y e_y + e_z)``, its part
    [B, P] (-1 = none) and the ray basis [B, 3 (e_x, e_y, e_z), 3].
    """
    n, parts = scene.present.shape
    focal = 1.0 / math.tan(math.radians(fov_degrees) / 2)
    f64 = torch.float64
    # Unnormalised ray directions: d(x, y) = x e_x + y e_y + e_z (camera_directions before normalisation).
    basis = torch.stack([rotation[:, :, 0], rotation[:, :, 1], -focal * rotation[:, :, 2]], dim=1)  # [B, 3, 3]
    inv = scene.inverse.to(f64)
    o = torch.einsum("bkij,bkj->bki", inv, (origin[:, None] - scene.centre).to(f64))  # ray origin, unit frame
    uvw = torch.einsum("bkij,bmj->bkmi", inv, basis.to(f64))  # [B, K, 3 (u, v, w), 3]: d' = x u + y v + w
    u, v, w = uvw.unbind(2)

    def dot(p, q):
        return (p * q).sum(-1)

    zero = torch.zeros_like(u[..., 0])
    ou, ov, ow, cc = dot(o, u), dot(o, v), dot(o, w), dot(o, o) - 1.0
    uu, vv, ww, uv, uw, vw = dot(u, u), dot(v, v), dot(w, w), dot(u, v), dot(u, w), dot(v, w)
    # Quadratics in (x, y) of the ray/unit-sphere equation a t^2 + 2 b t + c = 0: a, b and the discriminant b^2 - ac
    # (exact in float64; re-centred on each tile before the float32 evaluation, so no cancellation is left).
    coef = torch.stack(
        [
            torch.stack([uu, vv, 2 * uv, 2 * uw, 2 * vw, ww], -1),
            torch.stack([zero, zero, zero, ou, ov, ow], -1),
            torch.stack(
                [
                    ou * ou - cc * uu,
                    ov * ov - cc * vv,
                    2 * (ou * ov - cc * uv),
                    2 * (ou * ow - cc * uw),
                    2 * (ov * ow - cc * vw),
                    ow * ow - cc * ww,
                ],
                -1,
            ),
        ],
        dim=2,
    )  # [B, K, 3, 6]

    # Tiles each silhouette (the conic disc >= 0) can touch; unbounded conics (not expected) get every tile.
    tiles = -(-res // TILE)
    step = 2.0 / (res - 1) if res > 1 else 2.0
    margin = 1.0  # pixels
    x_lo, x_hi, x_ok = _conic_range(coef[:, :, 2], 0)
    y_lo, y_hi, y_ok = _conic_range(coef[:, :, 2], 1)
    col_lo = torch.where(x_ok, ((x_lo + 1) / step - margin).floor(), -1.0)
    col_hi = torch.where(x_ok, ((x_hi + 1) / step + margin).ceil(), tiles * TILE)
    row_lo = torch.where(y_ok, ((1 - y_hi) / step - margin).floor(), -1.0)
    row_hi = torch.where(y_ok, ((1 - y_lo) / step + margin).ceil(), tiles * TILE)
    tile_start = torch.arange(tiles, dtype=f64) * TILE
    cols = (tile_start + TILE - 1 >= col_lo[..., None]) & (tile_start <= col_hi[..., None])  # [B, K, tiles]
    rows = (tile_start + TILE - 1 >= row_lo[..., None]) & (tile_start <= row_hi[..., None])
    live = rows[..., :, None] & cols[..., None, :] & scene.present[:, :, None, None]
    bi, ki, ty, tx = live.nonzero(as_tuple=True)  # candidates (image, part, tile row, tile column)

    # Evaluate a, b, disc on every pixel of each candidate tile: one GEMM with the tile-local monomials.
    x0 = -1.0 + (tx * TILE).to(f64) * step
    y0 = 1.0 - (ty * TILE).to(f64) * step
    local = _shift(_take(coef.reshape(n * parts, 3, 6), bi * parts + ki), x0[:, None], y0[:, None])
    local = local.to(torch.float32)  # [M, 3, 6]
    j = torch.arange(TILE, dtype=torch.float32)
    sr, ss_ = torch.meshgrid(-j * step, j * step, indexing="ij")  # row offsets (y decreases), column offsets
    s_, r_ = ss_.reshape(-1), sr.reshape(-1)
    mono = torch.stack([s_ * s_, r_ * r_, s_ * r_, s_, r_, torch.ones_like(s_)])  # [6, TILE^2]
    poly = (local.reshape(-1, 6) @ mono).view(len(bi), 3, TILE * TILE)
    a, b, disc = poly.unbind(1)
    root = disc.clamp_min(0.0).sqrt()
    t_near = (-b - root) / a
    t = torch.where((disc > 0) & (t_near > 0), t_near, torch.inf)
    # The hair cap is clipped at the hairline: a clipped near hit falls through to the far side of the cap.
    cap = (ki == PART["hair"]).nonzero(as_tuple=True)[0]
    if len(cap):
        cb, ck = bi[cap], ki[cap]
        lin = uvw[cb, ck]  # [Mc, 3 (u, v, w), 3]
        d0 = (lin[:, 0] * x0[cap, None] + lin[:, 1] * y0[cap, None] + lin[:, 2]).to(torch.float32)
        d_cap = d0[:, :, None] + lin[:, 0, :, None].float() * s_ + lin[:, 1, :, None].float() * r_  # [Mc, 3, T^2]
        oc = o[cb, ck].to(torch.float32)[:, :, None]
        t_far = (-b[cap] + root[cap]) / a[cap]
        keep = []
        for tk in (t_near[cap], t_far):
            point = oc + tk[:, None] * d_cap
            line = (
                HAIRLINE_SIDE
                + HAIRLINE_FRONT * _smoothstep(point[:, 2], *HAIRLINE_FRONT_Z)
                + HAIRLINE_BACK * _smoothstep(-point[:, 2], *HAIRLINE_BACK_Z)
            )
            keep.append(point[:, 1] > line)
        ok = disc[cap] > 0
        t[cap] = torch.where(
            ok & keep[0] & (t_near[cap] > 0), t_near[cap], torch.where(ok & keep[1] & (t_far > 0), t_far, torch.inf)
        )

    # Nearest hit per pixel: scatter-min of (t bits << 8 | part) over the candidates (deterministic).
    side = tiles * TILE
    none = torch.iinfo(torch.int64).max
    key = (t.view(torch.int32).to(torch.int64) << _KEY_PART_BITS) | ki[:, None]
    key = torch.where(torch.isfinite(t), key, none)
    offsets = (torch.arange(TILE)[:, None] * side + torch.arange(TILE)[None, :]).reshape(-1)
    base = bi * side * side + ty * TILE * side + tx * TILE
    best = torch.full((n * side * side,), none, dtype=torch.int64)
    best.scatter_reduce_(0, (base[:, None] + offsets).reshape(-1), key.reshape(-1), "amin")
    best = best.view(n, side, side)[:, :res, :res].reshape(n, -1)
    found = best != none
    part = torch.where(found, best & ((1 << _KEY_PART_BITS) - 1), PART["background"])
    t_min = torch.where(found, best >> _KEY_PART_BITS, 0).to(torch.int32).view(torch.float32)
    return t_min, part, basis


def _take(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows ``index`` [M] of ``table`` [N, ...] (index_select, much faster than advanced indexing on the CPU)."""
    return table.reshape(len(table), -1).index_select(0, index).view((len(index),) + table.shape[1:])


def _shade(scene: _Scene, origin: torch.Tensor, t: torch.Tensor, part: torch.Tensor, basis: torch.Tensor, res: int):
    """Albedo with decals, Lambert shading and the white background: rgb [B, P, 3] in [0, 1], labels [B, P].

    Works on the compacted hit pixels only.
    """
    n, per_image = part.shape
    parts = scene.present.shape[1]
    hit = (part >= 0).reshape(-1).nonzero(as_tuple=True)[0]
    b, k = hit // per_image, part.reshape(-1).index_select(0, hit)
    ndc = torch.linspace(-1.0, 1.0, res)
    pixel = hit % per_image
    x, y = ndc.index_select(0, pixel % res), -ndc.index_select(0, pixel // res)
    camera = _take(torch.cat([origin, basis.reshape(n, 9)], dim=1), b)  # [M, 12]
    dirs = x[:, None] * camera[:, 3:6] + y[:, None] * camera[:, 6:9] + camera[:, 9:12]
    point = camera[:, :3] + t.reshape(-1).index_select(0, hit)[:, None] * dirs
    # Ellipsoid normal: the gradient of |L^-1 (p - c)|^2, i.e. (L^-T L^-1) (p - c).
    gram = scene.inverse.transpose(-1, -2) @ scene.inverse
    table = torch.cat([scene.centre, gram.reshape(n, parts, 9), scene.albedo], dim=-1).reshape(n * parts, 15)
    prim = _take(table, b * parts + k)
    rel = point - prim[:, :3]
    normal = torch.nn.functional.normalize((prim[:, 3:12].view(-1, 3, 3) * rel[:, None, :]).sum(-1), dim=-1)
    normal = torch.where((normal * dirs).sum(-1, keepdim=True) > 0, -normal, normal)  # inside of the hair cap
    albedo, label = _decals(scene, point, b, k, prim[:, 12:15].contiguous())
    light = torch.nn.functional.normalize(_t(LIGHT, normal), dim=0)
    shade = AMBIENT + DIFFUSE * (normal @ light).clamp_min(0.0)
    rgb = torch.full((n * per_image, 3), BACKGROUND)
    rgb.index_copy_(0, hit, (albedo * shade[:, None]).clamp(0.0, 1.0))
    labels = torch.full((n * per_image,), PART["background"], dtype=torch.int64)
    labels.index_copy_(0, hit, label)
    return rgb.view(n, per_image, 3), labels.view(n, per_image)


def _decals(scene: _Scene, point: torch.Tensor, image: torch.Tensor, part: torch.Tensor, albedo: torch.Tensor):
    """Paint eyes, brows, mouth (head frame) and the neckline (trunk frame) on hit samples.

    Args: hit points [M, 3], their image index [M] and part [M], albedo [M, 3]. Returns (albedo, label) [M, 3], [M].
    Works on the compacted samples of the face (skull and jaw, front half) and of the shirt only.
    """
    feat = scene.features
    label = part.clone()

    def painter(index):
        colour, code = albedo.index_select(0, index), label.index_select(0, index)

        def paint(mask, value, new_code):
            nonlocal colour, code
            value = value if isinstance(value, torch.Tensor) else _t(value, colour).expand_as(colour)
            colour = torch.where(mask[:, None], value, colour)
            code = torch.where(mask, new_code, code)

        def commit():
            albedo.index_copy_(0, index, colour)
            label.index_copy_(0, index, code)

        return paint, commit

    # Face: the point in the head's nominal frame (undo the pose, the placement at J15 and the head scale).
    index = ((label == PART["skull"]) | (label == PART["jaw"])).nonzero(as_tuple=True)[0]
    n = len(scene.head_position)
    per_image = torch.cat(
        [
            scene.head_rotation.reshape(n, 9),
            scene.head_position,
            scene.head_scale,  # 0:9, 9:12, 12:15
            feat["hair"] * 0.6,
            feat["iris"],
            feat["lips"],  # 15:18 brow colour, 18:21, 21:24
            torch.stack([feat["brow"], feat["eye_open"], feat["smile"], feat["mouth_open"]], dim=1),  # 24:28
        ],
        dim=1,
    )
    row = _take(per_image, image.index_select(0, index))
    rel = point.index_select(0, index) - row[:, 9:12]
    rel = (row[:, :9].view(-1, 3, 3) * rel[:, :, None]).sum(1)  # R^T (p - J15')
    nominal = (rel + _t(HEAD_JOINT_NOMINAL, point)) / row[:, 12:15]
    front = (nominal[:, 2] > DECAL_MIN_Z).nonzero(as_tuple=True)[0]
    index, row, nominal = index.index_select(0, front), row.index_select(0, front), nominal.index_select(0, front)
    hx, hy = nominal[:, 0], nominal[:, 1]
    ax = hx.abs()  # eyes and brows are mirror-symmetric
    brow, open_, smile, mouth_open = row[:, 24:28].unbind(1)
    paint, commit = painter(index)
    # Brows: arched bands above the eyes, raised by e[3].
    (bx, by), b_half, b_thick, b_arch, b_raise = BROW
    s = (ax - bx) / b_half
    brow_y = by + b_raise * brow + b_arch * (1 - s * s)
    paint((s.abs() < 1) & ((hy - brow_y).abs() < b_thick * (1 - 0.5 * s * s)), row[:, 15:18], PART["brow"])
    # Eyes: almond whites with iris and pupil; the aperture shrinks with e[2] down to a lash line.
    (ex, ey), (erx, ery), iris_r, pupil_r = EYE
    dx, dy = (ax - ex) / erx, hy - ey
    lid = ery * open_ * (1 - dx * dx).clamp_min(0.0)
    eye = (dx.abs() < 1) & (dy.abs() < lid)
    r2 = (ax - ex) ** 2 + dy**2
    paint(eye, (0.95, 0.95, 0.93), PART["eye"])
    paint(eye & (r2 < iris_r**2), row[:, 18:21], PART["eye"])
    paint(eye & (r2 < pupil_r**2), (0.03, 0.03, 0.03), PART["eye"])
    lash = (dx.abs() < 1) & ((dy.abs() - lid).abs() < LASH * (1 - 0.5 * dx * dx)) & (open_ < 1.2)
    paint(lash, (0.12, 0.08, 0.07), PART["eye"])
    # Mouth: lips around a dark opening; corners lift with a smile, the mouth widens.
    (mx, my), m_half, lip, lip_open, cavity, lift = MOUTH
    width = m_half * (1 + 0.25 * smile.clamp_min(0.0) - 0.1 * smile.clamp_max(0.0))
    s = (hx - mx) / width
    centre_y = my - 0.5 * JAW_DROP * mouth_open + lift * smile * s * s
    envelope = (1 - s * s).clamp_min(0.0).sqrt()
    dy = (hy - centre_y).abs()
    inside = s.abs() < 1
    lips = row[:, 21:24]
    paint(inside & (dy < (lip + lip_open * mouth_open) * envelope + 0.0012), lips, PART["mouth"])
    paint(inside & (dy < cavity * mouth_open * envelope), (0.22, 0.05, 0.06), PART["mouth"])
    paint(inside & (dy < 0.0009) & (mouth_open < 0.15), lips * 0.55, PART["mouth"])
    commit()

    # Neckline: skin on the shirt below the neck (trunk frame = world frame, static).
    shirt = torch.zeros_like(label, dtype=torch.bool)
    for name in ("torso", "chest", "trapezius_l", "trapezius_r"):
        shirt |= label == PART[name]
    index = shirt.nonzero(as_tuple=True)[0]
    per_image = torch.cat(
        [scene.neck_joint, feat["skin"] * 0.97, (feat["neckline"] == NECKLINES.index("v")).to(point.dtype)[:, None]],
        dim=1,
    )
    row = _take(per_image, image.index_select(0, index))
    nx, ny, nz = (point.index_select(0, index) - row[:, :3]).unbind(-1)
    crew_w, crew_d, crew_c = NECKLINE_CREW
    sx = (nx / crew_w).clamp(-1, 1)
    crew = (nx.abs() < crew_w) & (ny > -crew_d - crew_c * (1 - sx * sx))
    v_w, v_d, v_slope = NECKLINE_V
    vee = (nx.abs() < v_w) & (ny > -v_d + v_slope * nx.abs())
    paint, commit = painter(index)
    paint((nz > -0.02) & torch.where(row[:, 6] > 0.5, vee, crew), row[:, 3:6], PART["neckline"])
    commit()
    return albedo, label


def _portrait_camera(camera: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Ray origin (shifted by ORIGIN_OFFSET, as portrait_rays) and camera-to-world rotation of portrait cameras."""
    origin = cameras.camera_origin(camera)
    return origin + _t(constants.ORIGIN_OFFSET, origin), cameras.look_at_rotation(origin)


def _render_view(scene, origin, rotation, fov, res, supersample, want_parts):
    rgb, label = _shade(scene, origin, *_cast(scene, origin, rotation, fov, res * supersample), res * supersample)
    n = len(rgb)
    rgb = rgb.view(n, res * supersample, res * supersample, 3)
    if supersample > 1:
        rgb = torch.nn.functional.avg_pool2d(rgb.permute(0, 3, 1, 2), supersample).permute(0, 2, 3, 1)
    image = np.ascontiguousarray((rgb * 255.0 + 0.5).clamp(0, 255).to(torch.uint8).numpy())
    if not want_parts:
        return image, None
    # The part map at the centre sample of each output pixel's supersample block.
    label = label.view(n, res * supersample, res * supersample)[
        :, supersample // 2 :: supersample, supersample // 2 :: supersample
    ]
    return image, label.numpy().astype(np.int16)


def render_figures(
    fig: Figures,
    res: int = 128,
    face_res: int | None = None,
    *,
    supersample: int = SUPERSAMPLE,
    return_parts: bool = False,
    face_view: str = "portrait",
):
    """Render portraits and face crops of figures.

    Args:
        fig: the figures (labels and appearance).
        res: portrait side; face_res: face crop side (default res // 2).
        supersample: samples per pixel side (antialiasing).
        return_parts: also return part maps (int16 ids of :data:`PART`, -1 = background).
        face_view: ``"portrait"``: the face camera looks from the portrait camera's direction (the dataset's crops);
            ``"frontal"``: straight at the face.

    Returns:
        portraits [N, R, R, 3] and faces [N, F, F, 3] uint8, plus their part maps [N, R, R] / [N, F, F] with
        ``return_parts``.
    """
    face_res = res // 2 if face_res is None else face_res
    out = [[], [], [], []]
    for start in range(0, len(fig), BATCH):
        part = fig[np.arange(start, min(start + BATCH, len(fig)))]
        with torch.no_grad():
            scene = _build_scene(part)
            origin, rotation = _portrait_camera(torch.from_numpy(part.camera).float())
            image, image_parts = _render_view(
                scene, origin, rotation, constants.FOV_DEGREES, res, supersample, return_parts
            )
            head = (scene.head_rotation, scene.head_position)
            view_origin = origin if face_view == "portrait" else None
            f_origin, f_rotation = cameras.face_camera(head, view_origin)
            face, face_parts = _render_view(
                scene, f_origin, f_rotation, cameras.FACE_CAMERA_FOV_DEGREES, face_res, supersample, return_parts
            )
        for store, value in zip(out, (image, face, image_parts, face_parts)):
            store.append(value)
    images, faces = np.concatenate(out[0]), np.concatenate(out[1])
    if return_parts:
        return images, faces, np.concatenate(out[2]), np.concatenate(out[3])
    return images, faces


# ---------------------------------------------------------------------------------------------------------------------
# Writing


def _write_png(path: str, pixels: np.ndarray) -> None:
    Image.fromarray(pixels, "RGB").save(path, format="PNG", compress_level=6)


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """numpy.savez with fixed zip timestamps, so the file is byte-identical for identical arrays."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key, value in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(info, "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.ascontiguousarray(value), allow_pickle=False)


def _check_target(out: Path) -> None:
    """Refuse an output folder that exists with content, or that cannot be created (its nearest existing ancestor is
    a file or not writable)."""
    if str(out) in ("", "."):
        raise DatasetError("the output folder is the current folder; name a new folder")
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out} exists and is not a folder; choose a new output folder")
    if out.is_dir() and any(out.iterdir()):
        raise DatasetError(f"{out} exists and is not empty; choose a new output folder or remove it first")
    problem = output_folder_problem(out)
    if problem:
        raise DatasetError(f"cannot create {out}: {problem}")


def synthesize(
    out_dir: str | os.PathLike,
    n: int,
    res: int = 128,
    face_res: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Write a synthetic dataset of ``n`` figures to ``out_dir`` (format: :mod:`aniportrait.data.format`).

    Rendering goes to a temporary sibling folder that is renamed to ``out_dir`` at the end, so an interrupted or
    failed run leaves no partial dataset behind.

    Args:
        out_dir: the new dataset folder; must not exist or be empty.
        n: number of images (>= 1).
        res: portrait side in pixels; face_res: face crop side (default ``res // 2``).
        seed: the same seed gives bitwise-identical files.
        progress: show a tqdm progress bar.

    Returns:
        The dataset folder as a Path.

    Raises:
        DatasetError (a ValueError): bad arguments, or ``out_dir`` exists and is not empty.

    Example:
        >>> synthesize("data/synth", 1000, res=128)  # doctest: +SKIP
    """
    face_res = res // 2 if face_res is None else face_res
    for name, value in (("n", n), ("res", res), ("face_res", face_res)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise DatasetError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DatasetError(f"seed must be a non-negative integer, got {seed!r}")
    out = Path(out_dir)
    _check_target(out)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as err:  # e.g. a read-only file system
        raise DatasetError(f"cannot create {out}: {err.strerror or err}; choose another output folder") from None
    threads = torch.get_num_threads()
    torch.set_num_threads(RENDER_THREADS)
    try:
        (tmp / fmt.IMAGES_DIR).mkdir()
        (tmp / fmt.FACES_DIR).mkdir()
        digits = max(6, len(str(n - 1)))
        ids = [f"{i:0{digits}d}" for i in range(n)]
        labels = {key: [] for key in fmt.LABEL_SHAPES}
        with (
            ThreadPoolExecutor(max_workers=PNG_WORKERS) as pool,
            tqdm(total=n, disable=not progress, desc="synth", unit="img") as bar,
        ):
            pending = []
            for start in range(0, n, BATCH):
                fig = sample_figures(seed, min(BATCH, n - start), start)
                images, faces = render_figures(fig, res, face_res)
                for key, value in fig.labels().items():
                    labels[key].append(value)
                for j in range(len(fig)):
                    stem = ids[start + j] + fmt.IMAGE_EXT
                    pending.append(pool.submit(_write_png, str(tmp / fmt.IMAGES_DIR / stem), images[j]))
                    pending.append(pool.submit(_write_png, str(tmp / fmt.FACES_DIR / stem), faces[j]))
                for future in pending[: -2 * len(fig)]:  # keep at most two batches in flight
                    future.result()
                pending = pending[-2 * len(fig) :]
                bar.update(len(fig))
            for future in pending:
                future.result()
        arrays = {"ids": np.array(ids)}
        arrays.update({key: np.concatenate(value).astype(np.float32) for key, value in labels.items()})
        _write_npz(tmp / fmt.LABELS_FILE, arrays)
        meta = {
            "format": fmt.FORMAT,
            "version": fmt.VERSION,
            "image_size": int(res),
            "face_size": int(face_res),
            "count": int(n),
            "source": f"aniportrait.data.synth (procedural figure on the procedural SMPL rig, seed {int(seed)})",
            "face_camera": {
                "kind": "aniportrait.cameras.face_camera",
                "distance": cameras.FACE_CAMERA_DISTANCE,
                "fov_degrees": cameras.FACE_CAMERA_FOV_DEGREES,
                "center_offset": [float(c) for c in cameras.FACE_CENTER_OFFSET],  # from the posed head joint J15
                "view": "from the portrait camera's direction, up = head up",
            },
        }
        (tmp / fmt.META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        _check_target(out)  # someone may have filled it meanwhile
        if out.is_dir():
            out.rmdir()
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        torch.set_num_threads(threads)
    return out
