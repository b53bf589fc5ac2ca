"""The 3D scene of a synthetic figure: the union of posed ellipsoids (with their colours) built from its labels.

:func:`_build_scene` turns :class:`~aniportrait.data.synth_labels.Figures` into the :class:`_Scene` that
:mod:`aniportrait.data.synth_render` ray-casts; this module also holds the figure's shape: every size and offset in
canonical units, the hairline and the face and neckline decals, and the part ids of the part maps.

The figure
    A union of ellipsoids attached to the bones of the procedural SMPL-layout rig (:func:`~aniportrait.models.rig.
    procedural_rig`): torso (trunk, joints 0-9), neck (J12), head with skull, jaw, nose, ears and hair (J15), left and
    right trapezius (collars J13/J14), and deltoid + upper-arm stubs (shoulders J16/J17, towards the elbows J18/J19).
    The rig gives the mean-pose joints for the sampled betas (``BodyModel.joints``, one SMPL call per batch); each part
    is defined in that mean-pose canonical frame and moved by its bone's chain transform for the sampled pose
    (``R(E)`` about the joints, as in the release's ``run_model_lbs``). So the pose label is the figure's actual pose.

Shape (``betas``)
    The joints respond to betas through the rig (size, shoulder width and height, neck length move joints). The head
    takes the rig's own shape map: its parts are placed for the mean shape and moved by the affine map that takes the
    rig's rigid head (the vertices skinned to J15 alone) from the mean shape to this one, fitted per figure by least
    squares (exact for the rig, whose head shape directions are affine: size about the root, head size and face length
    about the rig's head centre, the neck length's lift). So a painted eye or lip corner goes back to one point of the
    generator's mean-shape canonical space for every figure. The other parts follow the rig's shape directions with
    its scales (``RIG_BETA_SCALES``): beta 0 size scales every part, 4 chest depth and 5 waist width the torso, 7 the
    neck thickness, 8 the upper-arm thickness. The face camera keeps its constant offset from J15 (as the
    generator's does), so a shaped face sits a little off the crop's centre, where the generator's face view shows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from aniportrait import cameras, constants
from aniportrait.data.synth_labels import HAIR_STYLES, Figures
from aniportrait.geometry import euler_zyx_to_matrix
from aniportrait.models.body import BodyModel
from aniportrait.models.rig import RIG_BETA_SCALES

__all__ = ["PART"]

# ---------------------------------------------------------------------------------------------------------------------
# From labels to the scene: the jaw drop of e[0] and the skin colour of skin_tone.

MOUTH_OPEN_FULL = 1.5  # e0 that opens the mouth fully
# Skin colours (linear-ish RGB in [0, 1]): skin_tone 0 is SKIN_LIGHT, 1 SKIN_DARK.
SKIN_LIGHT = (0.96, 0.80, 0.69)
SKIN_DARK = (0.36, 0.23, 0.16)

# ---------------------------------------------------------------------------------------------------------------------
# Geometry, in canonical units. The head is modelled in its own nominal frame: the mean-pose canonical frame of the
# nominal rig, where the face centre is the origin and the face looks along +z.

M = 1.0 / (constants.SMPL_SCALE * constants.FACE_RADIUS)  # canonical units per SMPL metre (1 unit = 1.177 m)
HEAD_JOINT = 15
RIGID_HEAD_WEIGHT = 0.999  # rig vertices with at least this skinning weight on J15 move with the head alone
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
# Face decals in the head's nominal frame (x, y) on its front (z > DECAL_MIN_Z). The frame is the generator's
# canonical (x, y) at the mean shape, and the decals sit where the training's expression teacher has the features:
# the procedural 3DMM registered to the rig's 68 landmarks (eye corners, lids, brow arch and mouth corners within a
# millimetre), and they move as it does per unit of each coefficient (the brows up, the smile's corners up and out,
# the upper lid down onto the lower one), so the deformation the teacher asks for is the one the images show.
DECAL_MIN_Z = -0.02
EYE = ((0.027, -0.0055), (0.014, 0.0042), 0.0045, 0.0018)  # (centre of the left eye, (rx, ry), iris r, pupil r)
LASH = 0.0011  # half thickness of the lash line at the lids' edges
BROW = ((0.030, 0.0071), 0.020, 0.0032, 0.0055, 0.0086)  # (centre of its ends, half length, half thickness, arch at
#                                                          the middle, raise per unit)
MOUTH = ((0.0, -0.057), 0.0215, 0.0045, 0.010, 0.012, 0.0042, 0.11)  # (centre, half width, lip half height, open
#                                     lip add, open cavity half height, smile corner lift, smile widening per unit)
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

# Part ids (order of the ellipsoids) and decal ids of the part maps
# :func:`~aniportrait.data.synth_render.render_figures` can return.
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
# Scene construction (torch, batched)


@lru_cache(maxsize=1)
def _body() -> BodyModel:
    return BodyModel.procedural()


@lru_cache(maxsize=1)
def _rigid_head() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The rig's rigid-head vertex ids [Vh], the float64 pseudo-inverse [4, Vh] of their mean-shape canonical
    positions with a column of ones (``pinv @ positions`` is the least-squares affine map from the mean shape to the
    shape of ``positions``), and the mean shape's face centre in the canonical mean pose [3]."""
    body = _body()
    ids = (body.smpl_model.lbs_weights[:, HEAD_JOINT] >= RIGID_HEAD_WEIGHT).nonzero(as_tuple=True)[0]
    with torch.no_grad():
        verts, joints = body.canonical_mesh(torch.zeros(1, 10))
    design = torch.cat([verts[0, ids], torch.ones(len(ids), 1)], dim=1).double()
    face_centre = joints[0, HEAD_JOINT] + torch.tensor(cameras.FACE_CENTER_OFFSET)
    return ids, torch.linalg.pinv(design), face_centre


def _head_shape_map(verts: torch.Tensor, joints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's map from its nominal frame to the figure's canonical mean pose, relative to J15.

    Args:
        verts, joints: [B, V, 3], [B, 24, 3] the figure's canonical mesh (``BodyModel.canonical_mesh``).

    Returns:
        linear [B, 3, 3] and offset [B, 3]: a nominal point c (face-centre origin, mean-shape size) lies at
        ``linear c + offset`` from the figure's J15, in the mean pose's axes.
    """
    ids, pinv, face_centre = _rigid_head()
    affine = (pinv @ verts[:, ids].double()).to(verts.dtype)  # [B, 4, 3]: row-vector x @ A[:3] + A[3]
    linear = affine[:, :3].transpose(1, 2)
    offset = linear @ face_centre.to(verts.dtype) + affine[:, 3] - joints[:, HEAD_JOINT]
    return linear, offset


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
    head_linear: torch.Tensor  # [B, 3, 3] and
    head_offset: torch.Tensor  # [B, 3]: nominal head point c -> head_linear c + head_offset from J15, mean pose
    neck_joint: torch.Tensor  # [B, 3] J12 (static)
    features: dict  # expression amounts and decal colours, [B] / [B, 3]

    def posed_head_points(self, nominal: torch.Tensor) -> torch.Tensor:
        """[B, P, 3] posed positions of points [P, 3] or [B, P, 3] given in the head's nominal frame."""
        nominal = nominal.expand(len(self.head_offset), -1, -1)
        return _posed_head(self.head_rotation, self.head_position, self.head_linear, self.head_offset, nominal)


def _posed_head(rotation, position, linear, offset, nominal: torch.Tensor) -> torch.Tensor:
    """[B, P, 3] posed positions of nominal head points [B, P, 3]: ``position + rotation (linear c + offset)``."""
    local = torch.einsum("bij,bpj->bpi", linear, nominal) + offset[:, None]
    return position[:, None] + torch.einsum("bij,bpj->bpi", rotation, local)


def _build_scene(fig: Figures) -> _Scene:
    f32 = torch.float32
    betas = torch.from_numpy(fig.betas).to(f32)
    pose = torch.from_numpy(fig.pose).to(f32)
    expression = torch.from_numpy(fig.expression).to(f32)
    n = len(fig)
    with torch.no_grad():
        verts, joints = _body().canonical_mesh(betas)  # mean-pose mesh and joints for these betas
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

    # Head: nominal frame -> the rig's head shape map for these betas (relative to J15, mean pose) -> posed.
    head_linear, head_offset = _head_shape_map(verts, joints)
    skull_c = _t(SKULL[0], betas)

    def head_part(c, L):
        centre = _posed_head(head_rotation, head_position, head_linear, head_offset, c[:, None])[:, 0]
        return centre, head_rotation @ head_linear @ L

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
    return _Scene(
        centre, inverse, albedo, present, head_rotation, head_position, head_linear, head_offset, j12, features
    )
