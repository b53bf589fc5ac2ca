"""SMPL body model for the pose deformation: rotations, SMPL file loading, a procedural rig, inverse skinning.

The release drives the head and shoulders with SMPL (``smplx.build_layer(model_type="smpl")``): six joints get ZYX
Euler angles on top of a canonical "mean pose", SMPL is evaluated twice (posed and canonical), both meshes are
moved to the normalised face frame

    n(v) = ((v - J12) / SMPL_SCALE - (0, FACE_TY, FACE_TZ)) / FACE_RADIUS,

and every vertex gets the inverse of its blended rigid transform ``M_v = sum_j W_vj A_j``. The renderer looks these
up by nearest posed vertex (``aniportrait.ops.inverse_lbs``) to send ray samples back to canonical space.

SMPL itself needs a registration and its licence forbids redistribution, so nothing here ships SMPL data:
``load_smpl_arrays`` reads a user-supplied ``SMPL_NEUTRAL.pkl`` (plain numpy, restricted unpickling) or ``.npz``,
and ``procedural_rig`` builds a stand-in head-and-shoulders rig in SMPL's exact array layout, so the whole pipeline
runs and trains without the real model.

Shape letters: ``B`` batch, ``V`` = 6890 SMPL vertices, ``Vv`` valid vertices (3595 for SMPL), ``J`` = 24 joints.
Frames: "SMPL metres" (y up, z forward, x to the figure's left) and canonical units (the face frame above).

Reference: YueWuHKUST/AniPortraitGAN ``generators/renderer.py`` (``run_model_lbs``, ``init_smpl``) and
``generators/utils.py`` (``convert_eulers_to_pose``), its checkpoint's ``renderer.smpl_model.*`` buffers and
``smpl_models/valid_smpl_knn_index.npy``.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import pickle
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import smplx
import torch
from torch import Tensor, nn

from aniportrait.constants import (
    FACE_RADIUS,
    FACE_TY,
    FACE_TZ,
    MEAN_POSE_ADJUST,
    POSE_JOINTS,
    SMPL_NUM_FACES,
    SMPL_NUM_VERTS,
    SMPL_PARENTS,
    SMPL_SCALE,
)
from aniportrait.errors import UserInputError

__all__ = [
    "BodyModel",
    "BodyModelError",
    "euler_zyx_to_matrix",
    "load_smpl_arrays",
    "matrix_to_euler_zyx",
    "procedural_rig",
    "resolve_smpl_path",
    "rig_valid_index",
    "to_face_frame",
]

# Environment variable naming the SMPL file when no explicit path is given.
SMPL_ENV_VAR = "ANIPORTRAIT_SMPL"
NUM_BETAS = 10  # SMPL shape coefficients used by the release
NUM_JOINTS = len(SMPL_PARENTS)  # 24
NUM_POSE_BASIS = 9 * (NUM_JOINTS - 1)  # 207 pose-corrective coefficients (rotation entries of joints 1..23)
NECK_JOINT = 12  # the face frame is anchored at this joint
HEAD_JOINT = 15
SPINE_JOINTS = (0, 3, 6, 9)  # pelvis, spine1, spine2, spine3
LEFT_ARM_JOINTS = (13, 16, 18)  # collar, shoulder, elbow
RIGHT_ARM_JOINTS = (14, 17, 19)
LOWER_ARM_JOINTS = (20, 21, 22, 23)  # wrists, hands
LEG_JOINTS = (1, 2, 4, 5, 7, 8, 10, 11)  # hips, knees, ankles, feet

# What every SMPL array must look like; None = any size (shapedirs may carry more than 10 components).
SMPL_ARRAY_SHAPES: dict[str, tuple[int | None, ...]] = {
    "v_template": (SMPL_NUM_VERTS, 3),
    "shapedirs": (SMPL_NUM_VERTS, 3, None),
    "posedirs": (SMPL_NUM_VERTS, 3, NUM_POSE_BASIS),
    "J_regressor": (NUM_JOINTS, SMPL_NUM_VERTS),
    "weights": (SMPL_NUM_VERTS, NUM_JOINTS),
    "kintree_table": (2, NUM_JOINTS),
    "f": (SMPL_NUM_FACES, 3),
}
_FIX_HINT = (
    "download SMPL_NEUTRAL.pkl from the SMPL website (registration required), convert it to plain numpy "
    f"(no chumpy), and pass it with --smpl PATH or {SMPL_ENV_VAR}"
)


class BodyModelError(UserInputError):
    """A SMPL file or array set that cannot be used; the message says what is wrong and how to fix it."""


# ---------------------------------------------------------------------------------------------------------------------
# Rotations (pytorch3d "ZYX" convention, as the release's pose files)


def _axis_rotation(axis: str, angle: Tensor) -> Tensor:
    """[..., 3, 3] right-handed rotation by ``angle`` [...] about the x, y or z axis."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    if axis == "x":
        rows = (one, zero, zero, zero, cos, -sin, zero, sin, cos)
    elif axis == "y":
        rows = (cos, zero, sin, zero, one, zero, -sin, zero, cos)
    else:
        rows = (cos, -sin, zero, sin, cos, zero, zero, zero, one)
    return torch.stack(rows, dim=-1).reshape(angle.shape + (3, 3))


def euler_zyx_to_matrix(angles: Tensor) -> Tensor:
    """Rotation matrices from ZYX Euler angles: ``R = Rz(a0) @ Ry(a1) @ Rx(a2)``.

    Args:
        angles: [..., 3] (angle about Z, about Y, about X) in radians, any float dtype.

    Returns:
        [..., 3, 3] rotation matrices in ``angles.dtype``, differentiable.

    Example:
        >>> euler_zyx_to_matrix(torch.zeros(6, 3)).shape
        torch.Size([6, 3, 3])
    """
    if angles.shape[-1:] != (3,):
        raise ValueError(f"angles must have shape [..., 3], got {list(angles.shape)}")
    rz = _axis_rotation("z", angles[..., 0])
    ry = _axis_rotation("y", angles[..., 1])
    rx = _axis_rotation("x", angles[..., 2])
    return rz @ ry @ rx


def matrix_to_euler_zyx(matrix: Tensor) -> Tensor:
    """Inverse of :func:`euler_zyx_to_matrix`, exact away from gimbal lock (middle angle near +-pi/2).

    Args:
        matrix: [..., 3, 3] rotation matrices.

    Returns:
        [..., 3] (about Z in (-pi, pi], about Y in [-pi/2, pi/2], about X in (-pi, pi]).
    """
    if matrix.shape[-2:] != (3, 3):
        raise ValueError(f"matrix must have shape [..., 3, 3], got {list(matrix.shape)}")
    # Row 2 of Rz Ry Rx is (-sin y, cos y sin x, cos y cos x); column 0 is cos y (cos z, sin z, *).
    about_y = torch.asin((-matrix[..., 2, 0]).clamp(-1.0, 1.0))
    about_z = torch.atan2(matrix[..., 1, 0], matrix[..., 0, 0])
    about_x = torch.atan2(matrix[..., 2, 1], matrix[..., 2, 2])
    return torch.stack((about_z, about_y, about_x), dim=-1)


def to_face_frame(points: Tensor, neck: Tensor) -> Tensor:
    """SMPL metres -> canonical units: ``((points - neck) / SMPL_SCALE - (0, FACE_TY, FACE_TZ)) / FACE_RADIUS``.

    Args:
        points: [B, N, 3] points in SMPL metres.
        neck: [B, 3] the neck joint J12 of the same mesh.

    Returns:
        [B, N, 3] points in canonical units (the face centre near the origin).
    """
    offset = points.new_tensor((0.0, FACE_TY, FACE_TZ))
    return ((points - neck[:, None]) / SMPL_SCALE - offset) / FACE_RADIUS


# ---------------------------------------------------------------------------------------------------------------------
# SMPL files


def resolve_smpl_path(path: str | os.PathLike | None) -> str | None:
    """The SMPL file to use: ``path`` if given, else ``$ANIPORTRAIT_SMPL`` if set, else None (the procedural rig)."""
    if path is None or str(path) == "":
        path = os.environ.get(SMPL_ENV_VAR) or None
    return None if path is None else os.path.expanduser(str(path))


def _numpy_attr(module: str, name: str) -> Any:
    # numpy 2 moved numpy.core to numpy._core; pickles name either, so try the new home first.
    for candidate in (module.replace("numpy.core", "numpy._core"), module):
        with contextlib.suppress(ImportError, AttributeError):
            return getattr(importlib.import_module(candidate), name)
    raise BodyModelError(f"cannot resolve {module}.{name} in this numpy version; {_FIX_HINT}")


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Python 3 pickles of protocol < 3 store bytes as _codecs.encode(str, "latin1"); only that encoding is allowed.
    if encoding not in ("latin1", "latin-1"):
        raise BodyModelError(f"the SMPL pickle asks for text encoding {encoding!r}; {_FIX_HINT}")
    return text.encode("latin1")


def _object_reconstructor(cls: type, base: type, state: Any) -> Any:
    # copyreg._reconstructor for protocol-0 pickles of the allowed classes; only the plain-object form is accepted.
    if base is not object or state is not None:
        raise BodyModelError(f"the SMPL pickle rebuilds {cls.__name__} in an unsupported way; {_FIX_HINT}")
    return object.__new__(cls)


# Globals a plain-numpy SMPL pickle may reference, mapped to what they resolve to (lazily, by name).
_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}
_HELPER_GLOBALS = {
    ("_codecs", "encode"): _latin1_encode,
    ("copyreg", "_reconstructor"): _object_reconstructor,
    ("copy_reg", "_reconstructor"): _object_reconstructor,
    ("builtins", "object"): object,
    ("__builtin__", "object"): object,
}
# scipy.sparse matrix classes (the official J_regressor is a csc_matrix); their state is plain numpy arrays.
_SPARSE_CLASSES = {"csc_matrix", "csr_matrix", "coo_matrix", "csc_array", "csr_array", "coo_array"}


class _SmplUnpickler(pickle.Unpickler):
    """Unpickler that can only rebuild numpy arrays, dtypes, scalars and scipy.sparse matrices.

    Any other global (``os.system``, ``builtins.eval``, chumpy classes, user classes) raises before it is called, so a
    malicious or chumpy-based file cannot run code.
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_GLOBALS:
            return _numpy_attr(module, name)
        if (module, name) in _HELPER_GLOBALS:
            return _HELPER_GLOBALS[(module, name)]
        if module.split(".")[0] == "chumpy":
            raise BodyModelError(f"the SMPL file holds chumpy objects ({module}.{name}); strip chumpy: {_FIX_HINT}")
        if module.startswith("scipy.sparse") and name in _SPARSE_CLASSES:
            return getattr(importlib.import_module("scipy.sparse"), name)  # scipy is a dependency
        raise BodyModelError(f"the SMPL file references the forbidden global {module}.{name}; {_FIX_HINT}")


def _to_dense(value: Any) -> np.ndarray:
    if hasattr(value, "toarray"):  # scipy.sparse
        return np.asarray(value.toarray())
    return np.asarray(value)


def _check_arrays(arrays: dict[str, Any], source: str) -> dict[str, np.ndarray]:
    """Validate SMPL arrays (keys, shapes, finiteness, parents) and return clean copies of the required keys."""
    missing = [key for key in SMPL_ARRAY_SHAPES if key not in arrays]
    if missing:
        raise BodyModelError(f"{source} lacks the SMPL keys {missing}; {_FIX_HINT}")
    out: dict[str, np.ndarray] = {}
    for key, expected in SMPL_ARRAY_SHAPES.items():
        # Check the shape before densifying, so a bogus sparse shape cannot allocate a huge array.
        shape = np.shape(arrays[key])
        fits = len(shape) == len(expected) and all(e is None or e == n for e, n in zip(expected, shape))
        if not fits or (key == "shapedirs" and shape[-1] < NUM_BETAS):
            wanted = [("K>=10" if e is None else e) for e in expected]
            raise BodyModelError(f"{source}: {key} must have shape {wanted}, got {list(shape)}; {_FIX_HINT}")
        value = _to_dense(arrays[key])
        if value.dtype == object:
            raise BodyModelError(f"{source}: {key} is not a numeric array (chumpy?); {_FIX_HINT}")
        if not np.all(np.isfinite(value)):
            raise BodyModelError(f"{source}: {key} holds NaN or Inf; {_FIX_HINT}")
        out[key] = value.astype(np.int64) if key in ("f", "kintree_table") else value.astype(np.float64)
    # The official file stores the root's parent as 2**32 - 1; only the non-root parents have to match SMPL.
    if tuple(out["kintree_table"][0, 1:]) != SMPL_PARENTS[1:]:
        raise BodyModelError(f"{source}: kintree_table[0] is not SMPL's kinematic tree; {_FIX_HINT}")
    out["kintree_table"][0, 0] = -1
    if out["f"].min() < 0 or out["f"].max() >= SMPL_NUM_VERTS:
        raise BodyModelError(f"{source}: f indexes vertices outside 0..{SMPL_NUM_VERTS - 1}; {_FIX_HINT}")
    return out


def load_smpl_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load the SMPL arrays from a plain-numpy ``SMPL_NEUTRAL.pkl`` or an ``.npz`` with the same keys.

    Pickles are read with a restricted unpickler (numpy arrays and scipy.sparse matrices only); chumpy objects and any
    other class are refused without being called. A sparse ``J_regressor`` is densified.

    Args:
        path: ``.pkl`` or ``.npz`` file.

    Returns:
        dict with float64 ``v_template`` [6890, 3], ``shapedirs`` [6890, 3, K>=10], ``posedirs`` [6890, 3, 207],
        ``J_regressor`` [24, 6890], ``weights`` [6890, 24] and int64 ``kintree_table`` [2, 24] (root parent -1),
        ``f`` [13776, 3]. Other keys of the file are dropped.

    Raises:
        BodyModelError: missing file, unreadable or forbidden content, missing keys or wrong shapes.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise BodyModelError(f"SMPL file not found: {path!r}; {_FIX_HINT}")
    try:
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as npz:
                content: Any = {key: npz[key] for key in npz.files}
        else:
            with open(path, "rb") as handle:
                # latin1 reads the Python 2 pickles that SMPL is distributed as.
                content = _SmplUnpickler(handle, encoding="latin1").load()
    except BodyModelError:
        raise
    except Exception as error:  # noqa: BLE001  (a corrupt pickle can raise almost anything; report it in one line)
        raise BodyModelError(f"cannot read SMPL file {path!r} ({type(error).__name__}: {error}); {_FIX_HINT}") from None
    if not isinstance(content, dict):
        raise BodyModelError(f"{path!r} holds a {type(content).__name__}, not a dict of SMPL arrays; {_FIX_HINT}")
    return _check_arrays(content, repr(path))


# ---------------------------------------------------------------------------------------------------------------------
# Procedural rig: a synthetic head-and-shoulders body in SMPL's array layout (no SMPL data)
#
# The mesh is a UV sphere (a top pole, RIG_RINGS rings of RIG_SEGMENTS vertices, a bottom pole: 6890 vertices,
# 13776 triangles) whose rings are horizontal slices of a smooth implicit body (union of ellipsoids and capsules, in
# the rest T-pose like SMPL). Each slice is star-shaped about a vertical axis, so a ring vertex is where the ray from
# the axis at the ring's height leaves the body.

RIG_RINGS = 84
RIG_SEGMENTS = 82
RIG_BLEND = 0.02  # smooth-union radius of the implicit body (m): fillets at neck, shoulders, armpits
RIG_HEAD_RING_DENSITY = 1.6  # rings per unit profile length on the head, relative to the body
RIG_RAY_MAX = 0.5  # slice rays start here (m), outside the body
RIG_TRACE_SAFETY = 0.8  # sphere-tracing steps are this fraction of the distance bound
RIG_TRACE_MIN_STEP = 1e-3  # (m) features thinner than this along a ray may be stepped over
RIG_BISECTIONS = 24
RIG_PROFILE_HEIGHTS = 600  # heights sampled to measure the body's profile for the ring spacing
RIG_PROFILE_ANGLES = 16  # directions averaged per profile height
RIG_ANGLE_SAMPLES = 4096  # resolution of the angular vertex-density integral
RIG_JITTER = 0.04  # relative size jitter of head, shoulders and torso for seed != 0

# Skinning-weight transitions (m): every blend between two joints is a smooth step over about 2 * RIG_BLEND_BAND.
RIG_BLEND_BAND = 0.015
RIG_JAW_TILT = 0.3  # the head/neck boundary rises by this much per metre towards the back
RIG_JAW_BELOW = 0.005  # the head weight reaches 1 this far below the head joint (on the jaw-line plane)
RIG_NECK_HALF_WIDTH = 0.05  # neck weight fades out beyond this |x|

# Joint regressor rows spread over the vertices within the first of these radii (m) that surrounds the joint.
RIG_REGRESSOR_RADII = (0.03, 0.045, 0.06, 0.08, 0.1, 0.13, 0.16, 0.2, 0.25, 0.3)
RIG_REGRESSOR_MIN_VERTS = 12
RIG_REGRESSOR_TOL = 1e-12  # (m) residual of the regressed joint position
RIG_NEWTON_STEPS = 60
RIG_MIN_LINE_STEP = 1e-8  # the Newton line search gives up below this step fraction
RIG_ARMIJO = 0.25  # sufficient-decrease fraction of the line search
# The valid (lookup) vertices: at most this far below the neck joint and beyond the shoulder joints (m).
RIG_VALID_DROP = 0.16
RIG_VALID_REACH = 0.09

# Shape directions (metres per unit beta) applied to unit fields: size (relative to the pelvis), shoulder width, head
# size (relative to the head centre), neck length, chest depth, waist width, face length (and narrowness), neck
# thickness, upper-arm thickness, shoulder height.
RIG_BETA_SCALES = (0.03, 0.015, 0.05, 0.015, 0.12, 0.12, 0.08, 0.15, 0.12, 0.012)
RIG_FACE_NARROWING = 0.5  # x shrinks by this fraction of the face-length stretch

# Extra vertex density around the arms (+-x) and the face (+z) on every ring: (centre angle, width, gain).
RIG_ANGLE_DENSITY = ((0.0, 0.35, 1.2), (np.pi, 0.35, 1.2), (np.pi / 2, 0.6, 0.8))


@dataclass(frozen=True)
class _Anatomy:
    """Nominal rest-pose anatomy of the rig in SMPL metres (y up, z forward, x to the figure's left).

    The face centre, J12 + SMPL_SCALE * (0, FACE_TY, FACE_TZ) = (0, 0.421, 0.083), lies at eye height 7.5 cm in front
    of the head centre and 2.3 cm behind the face surface.
    """

    head_centre: tuple[float, float, float] = (0.0, 0.425, 0.008)
    head_radii: tuple[float, float, float] = (0.078, 0.112, 0.098)
    nose_centre: tuple[float, float, float] = (0.0, 0.400, 0.098)
    nose_radii: tuple[float, float, float] = (0.014, 0.024, 0.030)
    neck_bottom: tuple[float, float, float] = (0.0, 0.200, -0.020)
    neck_top: tuple[float, float, float] = (0.0, 0.370, -0.006)
    neck_radius: float = 0.056
    chest_centre: tuple[float, float, float] = (0.0, 0.100, -0.022)
    chest_radii: tuple[float, float, float] = (0.170, 0.170, 0.100)
    belly_centre: tuple[float, float, float] = (0.0, -0.020, -0.018)
    belly_radii: tuple[float, float, float] = (0.140, 0.160, 0.092)
    # Trapezius: from the neck base out to the shoulder, and the upper-arm stub (T-pose, along +-x).
    trapezius_inner: tuple[float, float, float] = (0.030, 0.250, -0.026)
    trapezius_outer: tuple[float, float, float] = (0.165, 0.212, -0.026)
    trapezius_radius: float = 0.048
    arm_inner: tuple[float, float, float] = (0.140, 0.205, -0.026)
    arm_outer: tuple[float, float, float] = (0.320, 0.205, -0.026)
    arm_radius: float = 0.050
    # The axis of the slice rays: under the neck it follows the body, above it the head centre.
    axis_body_z: float = -0.022
    axis_blend_y: tuple[float, float] = (0.30, 0.37)
    # Joint positions [24, 3]. J12 sits (0, 0.1506, 0.1129) m below-behind the face centre, as in the release's frame;
    # forearm and leg joints are folded into the arm stubs and the pelvis, as the rig has no forearms or legs.
    joints: tuple[tuple[float, float, float], ...] = (
        (0.000, -0.120, -0.015),  # 0 pelvis
        (0.070, -0.100, -0.015),  # 1 left hip
        (-0.070, -0.100, -0.015),  # 2 right hip
        (0.000, -0.030, -0.025),  # 3 spine1
        (0.070, -0.115, -0.012),  # 4 left knee
        (-0.070, -0.115, -0.012),  # 5 right knee
        (0.000, 0.060, -0.028),  # 6 spine2
        (0.070, -0.125, -0.010),  # 7 left ankle
        (-0.070, -0.125, -0.010),  # 8 right ankle
        (0.000, 0.130, -0.028),  # 9 spine3
        (0.070, -0.125, 0.010),  # 10 left foot
        (-0.070, -0.125, 0.010),  # 11 right foot
        (0.000, 0.270, -0.030),  # 12 neck
        (0.070, 0.235, -0.030),  # 13 left collar
        (-0.070, 0.235, -0.030),  # 14 right collar
        (0.000, 0.350, -0.008),  # 15 head
        (0.175, 0.205, -0.026),  # 16 left shoulder
        (-0.175, 0.205, -0.026),  # 17 right shoulder
        (0.300, 0.205, -0.026),  # 18 left elbow
        (-0.300, 0.205, -0.026),  # 19 right elbow
        (0.325, 0.205, -0.026),  # 20 left wrist
        (-0.325, 0.205, -0.026),  # 21 right wrist
        (0.340, 0.205, -0.026),  # 22 left hand
        (-0.340, 0.205, -0.026),  # 23 right hand
    )

    def jittered(self, seed: int) -> _Anatomy:
        """Seed 0: the nominal figure; other seeds scale head, shoulder width and torso width by up to RIG_JITTER."""
        if seed == 0:
            return self
        head, shoulders, torso = 1.0 + RIG_JITTER * np.random.default_rng(seed).uniform(-1.0, 1.0, size=3)
        centre = np.array(self.head_centre)

        def about_head(p):  # scale a point about the head centre
            return tuple(centre + head * (np.array(p) - centre))

        def wide(p, factor=shoulders):  # move a point outwards in x
            return (p[0] * factor, p[1], p[2])

        joints = [tuple(j) for j in self.joints]
        for j in LEFT_ARM_JOINTS + RIGHT_ARM_JOINTS + LOWER_ARM_JOINTS:
            joints[j] = wide(joints[j])
        for j in LEG_JOINTS:
            joints[j] = wide(joints[j], torso)
        return replace(
            self,
            head_radii=tuple(head * r for r in self.head_radii),
            nose_centre=about_head(self.nose_centre),
            nose_radii=tuple(head * r for r in self.nose_radii),
            chest_radii=(torso * self.chest_radii[0],) + self.chest_radii[1:],
            belly_radii=(torso * self.belly_radii[0],) + self.belly_radii[1:],
            trapezius_outer=wide(self.trapezius_outer),
            arm_inner=wide(self.arm_inner),
            arm_outer=wide(self.arm_outer),
            joints=tuple(joints),
        )


def _smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _ellipsoid_sdf(p: np.ndarray, centre, radii) -> np.ndarray:
    # Distance bound k0 (k0 - 1) / k1 with k0 = |q / r|, k1 = |q / r^2| (exact on the surface, smooth near it).
    q = p - np.asarray(centre)
    k0 = np.linalg.norm(q / np.asarray(radii), axis=-1)
    k1 = np.linalg.norm(q / np.square(radii), axis=-1)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-12)


def _capsule_sdf(p: np.ndarray, a, b, radius: float) -> np.ndarray:
    a, b = np.asarray(a), np.asarray(b)
    t = np.clip(((p - a) @ (b - a)) / np.dot(b - a, b - a), 0.0, 1.0)
    return np.linalg.norm(p - a - t[..., None] * (b - a), axis=-1) - radius


def _smooth_union(d1: np.ndarray, d2: np.ndarray, k: float) -> np.ndarray:
    # Polynomial smooth minimum: equals min(d1, d2) when they differ by more than k.
    h = np.maximum(k - np.abs(d1 - d2), 0.0) / k
    return np.minimum(d1, d2) - h * h * k / 4.0


def _body_sdf(p: np.ndarray, anatomy: _Anatomy) -> np.ndarray:
    """Signed distance bound [...] of the rig's implicit body at points p [..., 3] (negative inside)."""
    a = anatomy
    mirror = np.array([-1.0, 1.0, 1.0])
    parts = [
        _ellipsoid_sdf(p, a.head_centre, a.head_radii),
        _ellipsoid_sdf(p, a.nose_centre, a.nose_radii),
        _capsule_sdf(p, a.neck_bottom, a.neck_top, a.neck_radius),
        _ellipsoid_sdf(p, a.chest_centre, a.chest_radii),
        _ellipsoid_sdf(p, a.belly_centre, a.belly_radii),
    ]
    for side in (np.ones(3), mirror):
        parts.append(_capsule_sdf(p, side * a.trapezius_inner, side * a.trapezius_outer, a.trapezius_radius))
        parts.append(_capsule_sdf(p, side * a.arm_inner, side * a.arm_outer, a.arm_radius))
    sdf = parts[0]
    for part in parts[1:]:
        sdf = _smooth_union(sdf, part, RIG_BLEND)
    return sdf


def _axis_z(y: np.ndarray, anatomy: _Anatomy) -> np.ndarray:
    """z of the vertical ray axis at heights y: the body axis below the neck, the head centre above."""
    blend = _smoothstep(y, *anatomy.axis_blend_y)
    return (1.0 - blend) * anatomy.axis_body_z + blend * anatomy.head_centre[2]


def _slice_radii(y: np.ndarray, angles: np.ndarray, anatomy: _Anatomy) -> np.ndarray:
    """[R, S] distance from the axis at heights y [R] along directions (cos a, 0, sin a) [S] to the body surface.

    Rays are sphere-traced inwards from RIG_RAY_MAX, so the hit is the farthest surface crossing (a slice that is not
    quite star-shaped gets its outer hull), then refined by bisection.
    """
    direction = np.stack([np.cos(angles), np.zeros_like(angles), np.sin(angles)], axis=-1)  # [S, 3]
    origin = np.stack([np.zeros_like(y), y, _axis_z(y, anatomy)], axis=-1)  # [R, 3]
    origin, direction = np.broadcast_arrays(origin[:, None], direction[None])
    origin, direction = origin.reshape(-1, 3), direction.reshape(-1, 3)

    def sdf_at(t, rows=slice(None)):  # sdf at origin + t * direction for the rays ``rows``
        return _body_sdf(origin[rows] + t[:, None] * direction[rows], anatomy)

    if (sdf_at(np.zeros(len(origin))) >= 0.0).any() or (sdf_at(np.full(len(origin), RIG_RAY_MAX)) < 0.0).any():
        raise RuntimeError("procedural rig: a slice axis lies outside the body, or the body is wider than RIG_RAY_MAX")
    t = np.full(len(origin), RIG_RAY_MAX)  # current trace position
    outside = t.copy()  # last position known to be outside
    active = np.arange(len(origin))
    while active.size:
        dist = sdf_at(t[active], active)
        active = active[dist >= 0.0]  # rays whose current point is inside are done
        dist = dist[dist >= 0.0]
        outside[active] = t[active]
        t[active] = np.maximum(t[active] - np.maximum(RIG_TRACE_SAFETY * dist, RIG_TRACE_MIN_STEP), 0.0)
    lo, hi = t, outside
    for _ in range(RIG_BISECTIONS):
        mid = 0.5 * (lo + hi)
        is_inside = sdf_at(mid) < 0.0
        lo, hi = np.where(is_inside, mid, lo), np.where(is_inside, hi, mid)
    return (0.5 * (lo + hi)).reshape(len(y), len(angles))


def _ring_angles() -> np.ndarray:
    """[RIG_SEGMENTS] ray angles from the back (-z) through +x, front, -x; denser at the arms and the face.

    The density is mirror-symmetric (angle a <-> pi - a), so vertex k and vertex RIG_SEGMENTS - k are mirror images.
    """
    fine = np.linspace(-np.pi / 2, 3 * np.pi / 2, RIG_ANGLE_SAMPLES + 1)
    density = np.ones_like(fine)
    for centre, width, gain in RIG_ANGLE_DENSITY:
        gap = np.angle(np.exp(1j * (fine - centre)))  # wrapped angle difference
        density += gain * np.exp(-0.5 * (gap / width) ** 2)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(fine))])
    return np.interp(np.arange(RIG_SEGMENTS) / RIG_SEGMENTS * cdf[-1], cdf, fine)


def _pole_height(anatomy: _Anatomy, start: float, stop: float) -> float:
    """Height where the ray axis leaves the body, searched from an inside height ``start`` towards ``stop``."""
    lo, hi = start, stop
    for _ in range(RIG_BISECTIONS):
        mid = 0.5 * (lo + hi)
        point = np.array([[0.0, mid, float(_axis_z(np.array(mid), anatomy))]])
        lo, hi = (mid, hi) if _body_sdf(point, anatomy)[0] < 0.0 else (lo, mid)
    return 0.5 * (lo + hi)


def _ring_heights(anatomy: _Anatomy, top: float, bottom: float) -> np.ndarray:
    """[RIG_RINGS] ring heights, top to bottom, evenly spaced along the body's profile (denser on the head)."""
    fine = np.linspace(top, bottom, RIG_PROFILE_HEIGHTS + 1)[1:-1]
    angles = np.linspace(0.0, 2 * np.pi, RIG_PROFILE_ANGLES, endpoint=False)
    radius = _slice_radii(fine, angles, anatomy).mean(axis=1)
    y = np.concatenate([[top], fine, [bottom]])
    r = np.concatenate([[0.0], radius, [0.0]])
    chin = anatomy.head_centre[1] - anatomy.head_radii[1]
    density = np.where(y[1:] > chin, RIG_HEAD_RING_DENSITY, 1.0)
    length = np.concatenate([[0.0], np.cumsum(density * np.hypot(np.diff(y), np.diff(r)))])
    targets = np.arange(1, RIG_RINGS + 1) / (RIG_RINGS + 1) * length[-1]
    return np.interp(targets, length, y)


def _sphere_faces() -> np.ndarray:
    """[13776, 3] int64 triangles of the UV sphere: top fan, ring strips, bottom fan."""
    seg = np.arange(RIG_SEGMENTS)
    nxt = (seg + 1) % RIG_SEGMENTS
    bottom = 1 + RIG_RINGS * RIG_SEGMENTS
    faces = [np.stack([np.zeros_like(seg), 1 + nxt, 1 + seg], axis=1)]
    for ring in range(RIG_RINGS - 1):
        a, b = 1 + ring * RIG_SEGMENTS + seg, 1 + ring * RIG_SEGMENTS + nxt
        faces += [np.stack([a, b, a + RIG_SEGMENTS], axis=1), np.stack([b, b + RIG_SEGMENTS, a + RIG_SEGMENTS], axis=1)]
    last = 1 + (RIG_RINGS - 1) * RIG_SEGMENTS
    faces.append(np.stack([last + seg, last + nxt, np.full_like(seg, bottom)], axis=1))
    return np.concatenate(faces).astype(np.int64)


def _rig_vertices(anatomy: _Anatomy) -> np.ndarray:
    """[6890, 3] rest-pose vertices: top pole, RIG_RINGS rings of RIG_SEGMENTS (top to bottom), bottom pole."""
    top = _pole_height(anatomy, anatomy.head_centre[1], anatomy.head_centre[1] + RIG_RAY_MAX)
    bottom = _pole_height(anatomy, anatomy.belly_centre[1], anatomy.belly_centre[1] - RIG_RAY_MAX)
    heights = _ring_heights(anatomy, top, bottom)
    angles = _ring_angles()
    radii = _slice_radii(heights, angles, anatomy)  # [RIG_RINGS, RIG_SEGMENTS]
    axis = _axis_z(heights, anatomy)[:, None]
    rings = np.stack(
        [radii * np.cos(angles), np.broadcast_to(heights[:, None], radii.shape), axis + radii * np.sin(angles)], axis=-1
    )
    poles = [[0.0, h, float(_axis_z(np.array(h), anatomy))] for h in (top, bottom)]
    return np.concatenate([poles[:1], rings.reshape(-1, 3), poles[1:]])


def _rig_weights(v: np.ndarray, anatomy: _Anatomy) -> np.ndarray:
    """[6890, 24] skinning weights: a nested partition of unity of smooth steps (head / neck / arms / trunk)."""
    x, y, z = v.T
    joints = np.array(anatomy.joints)
    head_y, neck_y = joints[HEAD_JOINT, 1], joints[NECK_JOINT, 1]
    weights = np.zeros((len(v), NUM_JOINTS))
    # Head above a jaw-line plane that rises towards the back of the skull.
    jaw = y + RIG_JAW_TILT * (z - joints[HEAD_JOINT, 2])
    head = _smoothstep(jaw, head_y - RIG_JAW_BELOW - RIG_BLEND_BAND, head_y - RIG_JAW_BELOW)
    # Neck: the column above the neck joint, away from the shoulders.
    neck = _smoothstep(y, neck_y - 2 * RIG_BLEND_BAND, neck_y) * (
        1.0 - _smoothstep(np.abs(x), RIG_NECK_HALF_WIDTH, RIG_NECK_HALF_WIDTH + 2 * RIG_BLEND_BAND)
    )
    weights[:, HEAD_JOINT] = head
    weights[:, NECK_JOINT] = (1.0 - head) * neck
    body = (1.0 - head) * (1.0 - neck)
    # Arms: collar -> shoulder -> elbow outwards in |x|, above the armpit.
    armpit = anatomy.arm_inner[1] - anatomy.arm_radius
    trunk = body.copy()
    for side, (collar, shoulder, elbow) in ((1.0, LEFT_ARM_JOINTS), (-1.0, RIGHT_ARM_JOINTS)):
        out_x, (collar_x, shoulder_x, elbow_x) = side * x, side * joints[[collar, shoulder, elbow], 0]
        arm = body * _smoothstep(out_x, RIG_NECK_HALF_WIDTH, collar_x + RIG_BLEND_BAND)
        arm = arm * _smoothstep(y, armpit - 2 * RIG_BLEND_BAND, armpit)
        to_shoulder = _smoothstep(out_x, shoulder_x - 2 * RIG_BLEND_BAND, shoulder_x)
        to_elbow = _smoothstep(out_x, elbow_x - 2 * RIG_BLEND_BAND, elbow_x)
        weights[:, collar] = arm * (1.0 - to_shoulder)
        weights[:, shoulder] = arm * to_shoulder * (1.0 - to_elbow)
        weights[:, elbow] = arm * to_shoulder * to_elbow
        trunk -= arm
    # Trunk: the spine joints by height, a smooth step between each consecutive pair.
    spine = np.array(SPINE_JOINTS)
    heights = joints[spine, 1]
    upper = np.clip(np.searchsorted(heights, y), 1, len(spine) - 1)  # y lies in [heights[upper - 1], heights[upper]]
    step = _smoothstep(y, heights[upper - 1], heights[upper])
    rows = np.arange(len(v))
    weights[rows, spine[upper]] = trunk * step
    weights[rows, spine[upper - 1]] = trunk * (1.0 - step)
    return weights


def _max_entropy_weights(points: np.ndarray, target: np.ndarray) -> np.ndarray | None:
    """Positive weights [K] with sum 1 and ``weights @ points == target``, closest to uniform in relative entropy.

    The weights are ``softmax(mu . (points - target))``; Newton's method on the convex ``logsumexp`` finds ``mu``.
    Returns None when it does not converge (the target is not strictly inside the points' convex hull).
    """
    offsets = points - target

    def log_partition(mu):
        logits = offsets @ mu
        return logits.max() + np.log(np.exp(logits - logits.max()).sum())

    mu = np.zeros(3)
    for _ in range(RIG_NEWTON_STEPS):
        logits = offsets @ mu
        weights = np.exp(logits - logits.max())
        weights /= weights.sum()
        grad = weights @ offsets  # the weighted mean offset, zero at the solution
        if np.linalg.norm(grad) < RIG_REGRESSOR_TOL:
            return weights
        hessian = (offsets * weights[:, None]).T @ offsets - np.outer(grad, grad)
        step = np.linalg.lstsq(hessian, grad, rcond=None)[0]
        # Backtracking line search keeps every step a descent step of the convex objective.
        size, current = 1.0, log_partition(mu)
        while log_partition(mu - size * step) > current - RIG_ARMIJO * size * grad @ step and size > RIG_MIN_LINE_STEP:
            size *= 0.5
        mu = mu - size * step
    return None


def _rig_regressor(v: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """[24, 6890] joint regressor whose rows are convex weights over nearby vertices that reproduce ``joints``.

    Row j spreads maximum-entropy weights over the vertices within a ball around joint j; the ball grows until the
    joint lies inside the hull of those vertices.
    """
    regressor = np.zeros((NUM_JOINTS, len(v)))
    for j, joint in enumerate(joints):
        for radius in RIG_REGRESSOR_RADII:
            ids = np.flatnonzero(np.linalg.norm(v - joint, axis=1) < radius)
            row = _max_entropy_weights(v[ids], joint) if ids.size >= RIG_REGRESSOR_MIN_VERTS else None
            if row is not None:
                regressor[j, ids] = row
                break
        else:
            raise RuntimeError(f"procedural rig: joint {j} is not inside the mesh")
    return regressor


def _rig_shapedirs(v: np.ndarray, weights: np.ndarray, anatomy: _Anatomy) -> np.ndarray:
    """[6890, 3, 10] shape directions (m per unit beta), smooth because they are masked by the skinning weights."""
    x, y, z = v.T
    joints = np.array(anatomy.joints)
    zero = np.zeros_like(x)
    left_arm, right_arm = weights[:, LEFT_ARM_JOINTS].sum(1), weights[:, RIGHT_ARM_JOINTS].sum(1)
    upper_arms = weights[:, LEFT_ARM_JOINTS[1:] + RIGHT_ARM_JOINTS[1:]].sum(1)
    trunk = weights[:, SPINE_JOINTS].sum(1)
    chest = _smoothstep(y, anatomy.belly_centre[1], anatomy.chest_centre[1])  # 0 at the waist, 1 at the chest
    head, neck = weights[:, HEAD_JOINT, None], weights[:, NECK_JOINT, None]
    head_offset = v - np.array(anatomy.head_centre)
    neck_axis_z = np.interp(
        y, [anatomy.neck_bottom[1], anatomy.neck_top[1]], [anatomy.neck_bottom[2], anatomy.neck_top[2]]
    )
    # The neck stretches from nothing at its base to the full lift under the head, which rides on top.
    neck_lift = head[:, 0] + neck[:, 0] * _smoothstep(
        y, joints[NECK_JOINT, 1] - 2 * RIG_BLEND_BAND, joints[HEAD_JOINT, 1]
    )
    arm_y, arm_z = anatomy.arm_inner[1], anatomy.arm_inner[2]
    fields = [
        v - joints[0],  # size
        np.stack([left_arm - right_arm, zero, zero], 1),  # shoulder width
        head_offset * head,  # head size
        np.stack([zero, neck_lift, zero], 1),  # neck length
        np.stack([zero, zero, (z - anatomy.axis_body_z) * trunk * chest], 1),  # chest depth
        np.stack([x * trunk * (1.0 - chest), zero, zero], 1),  # waist width
        np.stack([-RIG_FACE_NARROWING * head_offset[:, 0], head_offset[:, 1], zero], 1) * head,  # face length
        np.stack([x, zero, z - neck_axis_z], 1) * neck,  # neck thickness
        np.stack([zero, y - arm_y, z - arm_z], 1) * upper_arms[:, None],  # upper-arm thickness
        np.stack([zero, left_arm + right_arm, zero], 1),  # shoulder height
    ]
    return np.stack(fields, axis=-1) * np.array(RIG_BETA_SCALES)


def procedural_rig(seed: int = 0) -> dict[str, np.ndarray]:
    """A deterministic head-and-shoulders rig in SMPL's array layout, generated from scratch (no SMPL data).

    A closed mesh (UV-sphere topology, 6890 vertices, 13776 triangles) of a head (ellipsoid with a nose), neck,
    shoulders with upper-arm stubs in SMPL's rest T-pose, and a torso down to 0.45 m below the neck joint, in SMPL
    metres. The neck joint sits where SMPL's does relative to the face, so the release's face-frame normalisation
    puts the face centre near the canonical origin. Joints below the torso and beyond the stubs (legs, forearms,
    hands) are folded inside the mesh. Skinning uses joints 0, 3, 6, 9 (trunk), 12 (neck), 15 (head) and 13/16/18,
    14/17/19 (left, right collar/shoulder/elbow). The 10 shape directions are: size, shoulder width, head size,
    neck length, chest depth, waist width, face length, neck thickness, upper-arm thickness, shoulder height.
    ``posedirs`` are zero: the rig has no pose correctives.

    Args:
        seed: 0 gives the nominal figure; other seeds scale the head, shoulder width and torso width slightly.

    Returns:
        dict with float64 ``v_template`` [6890, 3], ``shapedirs`` [6890, 3, 10], ``posedirs`` [6890, 3, 207],
        ``J_regressor`` [24, 6890], ``weights`` [6890, 24] and int64 ``kintree_table`` [2, 24], ``f`` [13776, 3].

    Example:
        >>> model = BodyModel.from_arrays(rig := procedural_rig(), rig_valid_index(rig))
    """
    anatomy = _Anatomy().jittered(seed)
    v_template = _rig_vertices(anatomy)
    weights = _rig_weights(v_template, anatomy)
    return {
        "v_template": v_template,
        "shapedirs": _rig_shapedirs(v_template, weights, anatomy),
        "posedirs": np.zeros((SMPL_NUM_VERTS, 3, NUM_POSE_BASIS)),
        "J_regressor": _rig_regressor(v_template, np.array(anatomy.joints)),
        "weights": weights,
        "kintree_table": np.array([SMPL_PARENTS, range(NUM_JOINTS)], dtype=np.int64),
        "f": _sphere_faces(),
    }


def rig_valid_index(rig: dict[str, np.ndarray]) -> np.ndarray:
    """Sorted int64 ids of the rig vertices eligible for the nearest-vertex lookup (the release's 3595 for SMPL).

    The upper body: vertices higher than RIG_VALID_DROP below the neck joint and no farther out than RIG_VALID_REACH
    beyond the shoulder joints (the arm stubs leave the portrait box once lowered to the mean pose).
    """
    v = rig["v_template"]
    joints = rig["J_regressor"] @ v
    shoulder_x = 0.5 * (joints[16, 0] - joints[17, 0])
    keep = (v[:, 1] >= joints[NECK_JOINT, 1] - RIG_VALID_DROP) & (np.abs(v[:, 0]) <= shoulder_x + RIG_VALID_REACH)
    return np.flatnonzero(keep).astype(np.int64)


# ---------------------------------------------------------------------------------------------------------------------
# Body model


def _as_valid_index(valid_index: np.ndarray | str | os.PathLike, num_verts: int) -> np.ndarray:
    """Sorted unique int64 vertex ids from an array or a ``.npy`` file (e.g. the release's valid_smpl_knn_index)."""
    if isinstance(valid_index, (str, os.PathLike)):
        try:
            valid_index = np.load(valid_index, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise BodyModelError(f"cannot read the valid vertex index {os.fspath(valid_index)!r}: {error}") from None
    index = np.asarray(valid_index)
    if index.ndim != 1 or index.size == 0 or not np.issubdtype(index.dtype, np.integer):
        raise BodyModelError(
            f"valid_index must be a non-empty [Vv] integer array, got {index.dtype} {list(index.shape)}"
        )
    if index.min() < 0 or index.max() >= num_verts or np.unique(index).size != index.size:
        raise BodyModelError(f"valid_index must hold distinct vertex ids in 0..{num_verts - 1}")
    return np.sort(index).astype(np.int64)


def _mean_pose() -> Tensor:
    """[24, 3, 3] float64 rotations of the canonical mean pose: MEAN_POSE_ADJUST on 15/16/17, identity elsewhere."""
    rotations = torch.eye(3, dtype=torch.float64).repeat(NUM_JOINTS, 1, 1)
    for joint, angles in MEAN_POSE_ADJUST.items():
        rotations[joint] = euler_zyx_to_matrix(torch.tensor(angles, dtype=torch.float64))
    return rotations


def _homogeneous(rotation: Tensor, translation: Tensor) -> Tensor:
    """[..., 4, 4] rigid transforms from rotations [..., 3, 3] and translations [..., 3]."""
    top = torch.cat([rotation, translation[..., None]], dim=-1)
    bottom = top.new_tensor((0.0, 0.0, 0.0, 1.0)).expand(top.shape[:-2] + (1, 4))
    return torch.cat([top, bottom], dim=-2)


def _relative_transforms(rotations: Tensor, joints: Tensor) -> Tensor:
    """[B, 24, 4, 4] chain transforms A_i = [R^G_i | t^G_i - R^G_i J_i] of local rotations about rest joints.

    Args:
        rotations: [B, 24, 3, 3] local joint rotations.
        joints: [B, 24, 3] rest joint positions the rotations act about.
    """
    parents = list(SMPL_PARENTS)
    offsets = joints.clone()
    offsets[:, 1:] = joints[:, 1:] - joints[:, parents[1:]]  # T_i translates by J_i - J_parent (J_0 for the root)
    local = _homogeneous(rotations, offsets)
    chain = [local[:, 0]]
    for i in range(1, NUM_JOINTS):
        chain.append(chain[parents[i]] @ local[:, i])  # G_i = G_parent @ T_i
    world = torch.stack(chain, dim=1)
    # Subtract the rotated rest joint so A_i maps rest-space points, not joint-local ones.
    rotation = world[..., :3, :3]
    return _homogeneous(rotation, world[..., :3, 3] - (rotation @ joints[..., None])[..., 0])


class BodyModel(nn.Module):
    """SMPL (or the procedural rig) driven by the release's six-joint pose, with inverse skinning to canonical space.

    Submodule ``smpl_model`` is an ``smplx.SMPLLayer`` whose buffers are the release checkpoint's
    ``renderer.smpl_model.*`` keys. The valid vertex index and the mean pose are non-persistent buffers, so the
    state_dict holds exactly the SMPL arrays.

    Example:
        >>> body = BodyModel.procedural()
        >>> verts, vert_transforms = body.inverse_skinning(torch.zeros(2, 10), torch.zeros(2, 6, 3))
    """

    def __init__(self, smpl_model: smplx.SMPLLayer, valid_index: np.ndarray) -> None:
        """Wrap a built ``smplx.SMPLLayer``; prefer :meth:`from_arrays`, :meth:`from_file` or :meth:`procedural`."""
        super().__init__()
        self.smpl_model = smpl_model
        dtype = smpl_model.v_template.dtype
        self.register_buffer("valid_index", torch.from_numpy(valid_index), persistent=False)
        self.register_buffer("mean_pose", _mean_pose().to(dtype), persistent=False)

    @classmethod
    def from_arrays(
        cls, arrays: dict[str, Any], valid_index: np.ndarray | str | os.PathLike, dtype: torch.dtype = torch.float32
    ) -> BodyModel:
        """Build from SMPL arrays (as returned by :func:`load_smpl_arrays` or :func:`procedural_rig`).

        Args:
            arrays: the seven SMPL arrays (v_template, shapedirs, posedirs, J_regressor, weights, kintree_table, f).
            valid_index: [Vv] vertex ids for the nearest-vertex lookup, or a ``.npy`` file holding them.
            dtype: floating dtype of the buffers.
        """
        arrays = _check_arrays(arrays, "SMPL arrays")
        struct = smplx.utils.Struct(**arrays)
        # smplx prints a warning for every model with 10 shape components (all SMPL 1.0 files); keep stdout clean.
        with contextlib.redirect_stdout(io.StringIO()):
            smpl_model = smplx.SMPLLayer(model_path="", data_struct=struct, num_betas=NUM_BETAS, dtype=dtype)
        return cls(smpl_model, _as_valid_index(valid_index, SMPL_NUM_VERTS))

    @classmethod
    def from_file(
        cls, path: str | os.PathLike, valid_index: np.ndarray | str | os.PathLike, dtype: torch.dtype = torch.float32
    ) -> BodyModel:
        """Build from a plain-numpy ``SMPL_NEUTRAL.pkl`` or ``.npz`` (see :func:`load_smpl_arrays`)."""
        return cls.from_arrays(load_smpl_arrays(path), valid_index, dtype)

    @classmethod
    def procedural(cls, seed: int = 0, dtype: torch.dtype = torch.float32) -> BodyModel:
        """Build from :func:`procedural_rig` with its :func:`rig_valid_index`."""
        rig = procedural_rig(seed)
        return cls.from_arrays(rig, rig_valid_index(rig), dtype)

    def extra_repr(self) -> str:
        return f"valid_vertices={self.valid_index.numel()}"

    def _pose_rotations(self, betas: Tensor, pose: Tensor) -> tuple[Tensor, Tensor]:
        """Validate inputs; return betas in the model dtype and the given rotations [B, 24, 3, 3] (R(E) on 12..17)."""
        if not isinstance(betas, Tensor) or betas.ndim != 2 or betas.shape[1] != NUM_BETAS or len(betas) == 0:
            raise ValueError(f"betas must have shape [B, {NUM_BETAS}], got {_shape_of(betas)}")
        if not isinstance(pose, Tensor) or pose.shape != (len(betas), len(POSE_JOINTS), 3):
            raise ValueError(
                f"pose must have shape [B, {len(POSE_JOINTS)}, 3] with B = {len(betas)}, got {_shape_of(pose)}"
            )
        for name, value in (("betas", betas), ("pose", pose)):
            if not value.is_floating_point() or not torch.isfinite(value).all():
                raise ValueError(f"{name} must be a finite floating-point tensor")
        dtype = self.mean_pose.dtype
        rotations = torch.eye(3, dtype=dtype, device=pose.device).repeat(len(pose), NUM_JOINTS, 1, 1)
        rotations[:, list(POSE_JOINTS)] = euler_zyx_to_matrix(pose.to(dtype))
        return betas.to(dtype), rotations

    def _smpl(self, betas: Tensor, rotations: Tensor) -> tuple[Tensor, Tensor]:
        """SMPL forward (pose correctives included) -> vertices [B, V, 3] and joints [B, 24, 3] in canonical units."""
        out = self.smpl_model(betas=betas, global_orient=rotations[:, :1], body_pose=rotations[:, 1:])
        joints = out.joints[:, :NUM_JOINTS]  # drop smplx's 21 extra vertex joints
        neck = joints[:, NECK_JOINT]
        return to_face_frame(out.vertices, neck), to_face_frame(joints, neck)

    def joints(self, betas: Tensor, pose: Tensor) -> Tensor:
        """Posed SMPL joints in canonical units.

        Args:
            betas: [B, 10] shape coefficients.
            pose: [B, 6, 3] ZYX Euler angles of joints 12..17 relative to the mean pose.

        Returns:
            [B, 24, 3] joints; J12 is always at (0, -FACE_TY, -FACE_TZ) / FACE_RADIUS.
        """
        betas, rotations = self._pose_rotations(betas, pose)
        return self._smpl(betas, rotations @ self.mean_pose)[1]

    def inverse_skinning(self, betas: Tensor, pose: Tensor) -> tuple[Tensor, Tensor]:
        """Posed valid vertices and their inverse skinning transforms in canonical units (the release's inverse LBS).

        The given rotations R(E) of joints 12..17 act on top of the mean pose (absolute pose R(E) @ A); SMPL runs
        posed and canonical, both meshes move to the face frame, and each vertex gets the inverse of
        ``M_v = sum_j W_vj A_j``, with A_j the chain transforms of R(E) about the canonical joints. Zero pose gives
        identity transforms.

        Args:
            betas: [B, 10] SMPL shape coefficients.
            pose: [B, 6, 3] ZYX Euler angles (about Z, Y, X) of joints 12 neck, 13/14 collars, 15 head,
                16/17 shoulders, relative to the canonical mean pose.

        Returns:
            verts [B, Vv, 3]: posed valid vertices; vert_transforms [B, Vv, 4, 4]: ``M_v^-1``, mapping a posed point
            near vertex v to canonical space. Model dtype, differentiable w.r.t. betas and pose.

        Example:
            >>> verts, vert_transforms = body.inverse_skinning(betas, pose)
            >>> canonical, _ = aniportrait.ops.inverse_lbs(points, verts, vert_transforms)
        """
        betas, rotations = self._pose_rotations(betas, pose)
        batch = len(betas)
        # One batched SMPL call: the first half posed (R(E) @ A), the second canonical (A).
        both = torch.cat([rotations @ self.mean_pose, self.mean_pose.expand_as(rotations)])
        verts, joints = self._smpl(torch.cat([betas, betas]), both)
        posed_verts, canonical_joints = verts[:batch], joints[batch:]
        # Chain transforms of the given rotations only: the mean pose is already part of the canonical joints.
        transforms = _relative_transforms(rotations, canonical_joints)
        weights = self.smpl_model.lbs_weights[self.valid_index]  # [Vv, 24]
        blended = torch.einsum("vj,bjk->bvk", weights, transforms.flatten(2)).unflatten(-1, (4, 4))
        return posed_verts[:, self.valid_index], torch.linalg.inv(blended)


def _shape_of(value: Any) -> Any:
    return list(value.shape) if isinstance(value, Tensor) else type(value).__name__
