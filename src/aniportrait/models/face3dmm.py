"""3D morphable face model (3DMM) for the imitation losses: BFM loading, a procedural stand-in, registration to SMPL.

AniPortraitGAN's expression deformation D_e imitates the 3DMM face (paper Eq. 7, 9, 10)

    S(z_id, z_exp) = S_mean + B_id z_id + B_exp z_exp,        z_id [80], z_exp [64],

in the Deep3DFaceRecon basis (BFM 2009 identity, Guo et al. expression PCA). The landmark loss compares the 68
landmarks f_lm(S) of two coefficient sets; the imitation loss asks D_e(x^p) - x^p to equal -B_exp z_exp at the nearest
point of S. Both need the 3DMM face placed in the generator's canonical (neutral-pose) space, which the paper leaves
open: here it is a similarity transform fitted (Umeyama) from the mean face's 68 landmarks to the 68 landmarks of the
SMPL head in the canonical mean pose (the release ships them as barycentrics, ``smpl_face_landmarks_bary.npy``).

Units and axes of the 3DMM (``Face3DMM.unit_metres`` = 0.1): Deep3DFaceRecon's ``BFM_model_front.mat`` divides the
BFM's micrometres by 1e5, so one unit is a decimetre; x points to the subject's left (image right in a frontal
view), y up, z out of the face towards the viewer, i.e. the same handedness and directions as SMPL metres. With
``recenter=True`` (Deep3DFaceRecon's default) the mean shape's centroid is the origin. The canonical frame of the
generator is SMPL's mean-pose mesh normalised by :func:`aniportrait.models.body.to_face_frame` (1 unit = SMPL_SCALE *
FACE_RADIUS = 1.177 m, the face centre near the origin); the registration scale absorbs the unit change (about
0.085 canonical units per decimetre).

The BFM needs a registration and may not be redistributed, so nothing here ships BFM data, and the model's buffers are
non-persistent (they never land in a checkpoint). ``load_bfm`` reads a user-supplied file (``--bfm PATH`` or
``ANIPORTRAIT_BFM``); ``procedural_3dmm`` builds a stand-in face in the same layout from scratch, so that the losses,
tests and the synthetic data engine run without it.

Shape letters: ``B`` batch, ``N`` 3DMM vertices (35709 for BFM_model_front), ``T`` triangles, ``P`` query points,
``K`` = 68 landmarks (iBUG 300-W order: jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67).

References: sicxu/Deep3DFaceRecon_pytorch ``models/bfm.py`` (ParametricFaceModel) and ``util/load_mats.py``
(transferBFM09); the AniPortraitGAN paper, sections 3.3.2 and 3.5 (Eq. 6-7, 9-10); AniFaceGAN (the 3DMM imitation
it inherits); Umeyama, "Least-squares estimation of transformation parameters between two point patterns", TPAMI 1991.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from aniportrait.constants import FACE_RADIUS, SMPL_NUM_FACES, SMPL_PARENTS, SMPL_SCALE
from aniportrait.errors import UserInputError
from aniportrait.models.body import BodyModel, to_face_frame

__all__ = [
    "BFM_ENV_VAR",
    "EXPRESSION_MEANING",
    "Face3DMM",
    "FaceModelError",
    "RegisteredFace",
    "build_face_model",
    "load_bfm",
    "load_landmark_bary",
    "procedural_3dmm",
    "register_to_body",
    "resolve_bfm_path",
    "rig_face_landmarks",
    "rig_landmark_bary",
    "smpl_landmarks",
    "umeyama",
]

BFM_ENV_VAR = "ANIPORTRAIT_BFM"  # environment variable naming BFM_model_front.mat when --bfm is not given
NUM_ID = 80  # identity coefficients (Deep3DFaceRecon keeps the first 80 BFM shape components)
NUM_EXP = 64  # expression coefficients (the first 64 of Guo et al.'s expression PCA)
NUM_TEX = 80  # texture coefficients
NUM_LANDMARKS = 68
BFM_UNIT_METRES = 0.1  # BFM micrometres / 1e5 (transferBFM09: "unify the scale to decimeter")
NECK_JOINT, HEAD_JOINT = 12, 15
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"  # MATLAB v7.3 files are HDF5, with the signature at byte 0 or 512

_FIX_HINT = (
    "get the Basel Face Model 2009 (01_MorphableModel.mat, registration required) and Deep3DFaceRecon's "
    "Exp_Pca.bin, convert them with Deep3DFaceRecon's util/load_mats.py into BFM_model_front.mat (we never ship it), "
    f"and pass it with --bfm PATH or {BFM_ENV_VAR}"
)

# What the leading expression coefficients do in ``procedural_3dmm`` (the synthetic data engine uses the same meaning).
# In the real BFM basis the coefficients are PCA components with no prescribed meaning.
EXPRESSION_MEANING = ("mouth open", "smile", "eyes closed", "brows raised")
# Canonical units per metre, for reading registration scales: 1 canonical unit = SMPL_SCALE * FACE_RADIUS metres.
CANONICAL_PER_METRE = 1.0 / (SMPL_SCALE * FACE_RADIUS)


class FaceModelError(UserInputError):
    """A 3DMM or landmark file that cannot be used; the message says what is wrong and how to fix it."""


# ---------------------------------------------------------------------------------------------------------------------
# The model


def _as_float64(value: Any, name: str) -> np.ndarray:
    array = value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise FaceModelError(f"{name} must be a numeric array, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise FaceModelError(f"{name} holds NaN or Inf")
    return array


def _as_index(value: Any, name: str, size: int) -> np.ndarray:
    array = _as_float64(value, name)
    if not np.array_equal(array, np.round(array)) or array.size == 0:
        raise FaceModelError(f"{name} must hold integer vertex ids")
    if array.min() < 0 or array.max() >= size:
        raise FaceModelError(f"{name} indexes vertices outside 0..{size - 1}")
    return array.astype(np.int64)


class Face3DMM(nn.Module):
    """A linear 3DMM ``S = mean + B_id id + B_exp exp`` in Deep3DFaceRecon's layout (x-y-z interleaved per vertex).

    Buffers (all non-persistent, so that licensed BFM data never enters a checkpoint): ``mean_shape`` [3N],
    ``id_base`` [3N, 80], ``exp_base`` [3N, 64], ``triangles`` [T, 3] int64 (0-based, counter-clockwise seen from
    the front), ``landmark_index`` [68] int64, and optionally ``mean_tex`` [3N] and ``tex_base`` [3N, 80] (RGB in
    0..255 as in BFM; None when absent). Coordinates are in units of ``unit_metres`` metres (0.1 for BFM and the
    procedural model): x to the subject's left, y up, z out of the face.

    Example:
        >>> face = procedural_3dmm()
        >>> face.vertices(torch.zeros(2, 80), torch.zeros(2, 64)).shape
        torch.Size([2, 3025, 3])
    """

    def __init__(
        self,
        mean_shape: Any,
        id_base: Any,
        exp_base: Any,
        triangles: Any,
        landmark_index: Any,
        mean_tex: Any = None,
        tex_base: Any = None,
        unit_metres: float = BFM_UNIT_METRES,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        """Validate and store the arrays (numpy or torch, 0-based indices); see :func:`load_bfm` for BFM files."""
        super().__init__()
        mean = _as_float64(mean_shape, "mean_shape").reshape(-1)
        if mean.size == 0 or mean.size % 3:
            raise FaceModelError(f"mean_shape must have 3N entries, got {mean.size}")
        size = mean.size // 3
        bases = {}
        for name, value, columns in (("id_base", id_base, NUM_ID), ("exp_base", exp_base, NUM_EXP)):
            base = _as_float64(value, name)
            if base.shape != (3 * size, columns):
                raise FaceModelError(
                    f"{name} must have shape [3N, {columns}] = [{3 * size}, {columns}], got {list(base.shape)}"
                )
            bases[name] = base
        tri = _as_index(triangles, "triangles", size)
        if tri.ndim != 2 or tri.shape[1] != 3:
            raise FaceModelError(f"triangles must have shape [T, 3], got {list(tri.shape)}")
        landmarks = _as_index(landmark_index, "landmark_index", size).reshape(-1)
        if landmarks.shape != (NUM_LANDMARKS,):
            raise FaceModelError(f"landmark_index must hold {NUM_LANDMARKS} vertex ids, got {landmarks.size}")
        if (mean_tex is None) != (tex_base is None):
            raise FaceModelError("mean_tex and tex_base must be given together")
        self.unit_metres = float(unit_metres)

        def as_tensor(array: np.ndarray) -> Tensor:
            return torch.from_numpy(array).to(dtype)

        self.register_buffer("mean_shape", as_tensor(mean), persistent=False)
        self.register_buffer("id_base", as_tensor(bases["id_base"]), persistent=False)
        self.register_buffer("exp_base", as_tensor(bases["exp_base"]), persistent=False)
        self.register_buffer("triangles", torch.from_numpy(tri), persistent=False)
        self.register_buffer("landmark_index", torch.from_numpy(landmarks), persistent=False)
        if mean_tex is None:
            self.register_buffer("mean_tex", None, persistent=False)
            self.register_buffer("tex_base", None, persistent=False)
        else:
            tex = _as_float64(mean_tex, "mean_tex").reshape(-1)
            base = _as_float64(tex_base, "tex_base")
            if tex.shape != (3 * size,) or base.shape != (3 * size, NUM_TEX):
                raise FaceModelError(
                    f"mean_tex must have 3N = {3 * size} entries and tex_base shape "
                    f"[{3 * size}, {NUM_TEX}], got {tex.size} and {list(base.shape)}"
                )
            self.register_buffer("mean_tex", as_tensor(tex), persistent=False)
            self.register_buffer("tex_base", as_tensor(base), persistent=False)

    @property
    def num_vertices(self) -> int:
        return self.mean_shape.numel() // 3

    @property
    def has_texture(self) -> bool:
        return self.tex_base is not None

    def extra_repr(self) -> str:
        return (
            f"vertices={self.num_vertices}, triangles={len(self.triangles)}, texture={self.has_texture}, "
            f"unit_metres={self.unit_metres}"
        )

    def _coefficients(self, id: Tensor | None, expression: Tensor | None) -> tuple[Tensor, Tensor]:
        """Validate [B, 80] / [B, 64] coefficients (None = zeros) and cast them to the buffer dtype."""
        given = [value for value in (id, expression) if value is not None]
        batch = len(given[0]) if given else 1
        out = []
        for name, value, size in (("id", id, NUM_ID), ("expression", expression, NUM_EXP)):
            if value is None:
                value = self.mean_shape.new_zeros(batch, size)
            if not isinstance(value, Tensor) or value.shape != (batch, size) or not value.is_floating_point():
                shape = list(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise ValueError(f"{name} must be a float tensor of shape [B, {size}] with B = {batch}, got {shape}")
            out.append(value.to(self.mean_shape.dtype))
        return out[0], out[1]

    def vertices(self, id: Tensor | None = None, expression: Tensor | None = None) -> Tensor:
        """The 3DMM mesh ``mean + B_id id + B_exp exp`` (differentiable in both coefficient sets).

        Args:
            id: [B, 80] identity coefficients, or None for zeros.
            expression: [B, 64] expression coefficients, or None for zeros (neutral).

        Returns:
            [B, N, 3] vertices in model units (``unit_metres``), buffer dtype.

        Example:
            >>> verts = face.vertices(torch.randn(4, 80), torch.zeros(4, 64))
        """
        id, expression = self._coefficients(id, expression)
        flat = self.mean_shape + id @ self.id_base.T + expression @ self.exp_base.T
        return flat.unflatten(-1, (-1, 3))

    forward = vertices

    def expression_offsets(self, expression: Tensor) -> Tensor:
        """The expression displacement ``B_exp exp`` [B, N, 3] (paper Eq. 10 uses its negative as the target)."""
        _, expression = self._coefficients(None, expression)
        return (expression @ self.exp_base.T).unflatten(-1, (-1, 3))

    def landmarks(self, id: Tensor | None = None, expression: Tensor | None = None) -> Tensor:
        """The 68 landmark vertices f_lm(S) [B, 68, 3] (only their rows of the bases are evaluated)."""
        id, expression = self._coefficients(id, expression)
        rows = (3 * self.landmark_index[:, None] + torch.arange(3, device=self.landmark_index.device)).reshape(-1)
        flat = self.mean_shape[rows] + id @ self.id_base[rows].T + expression @ self.exp_base[rows].T
        return flat.unflatten(-1, (NUM_LANDMARKS, 3))

    def texture(self, tex: Tensor) -> Tensor:
        """Per-vertex colours ``mean_tex + B_tex tex`` [B, N, 3] (0..255 scale) from [B, 80] texture coefficients."""
        if not self.has_texture:
            raise ValueError("this face model has no texture basis")
        if not isinstance(tex, Tensor) or tex.ndim != 2 or tex.shape[1] != NUM_TEX:
            raise ValueError(f"tex must have shape [B, {NUM_TEX}]")
        return (self.mean_tex + tex.to(self.tex_base.dtype) @ self.tex_base.T).unflatten(-1, (-1, 3))


# ---------------------------------------------------------------------------------------------------------------------
# BFM_model_front.mat (Deep3DFaceRecon)

_BFM_REQUIRED = ("meanshape", "idBase", "exBase", "tri", "keypoints")
_BFM_OPTIONAL = ("meantex", "texBase")


def resolve_bfm_path(path: str | os.PathLike | None) -> str | None:
    """The BFM file to use: ``path`` if given, else ``$ANIPORTRAIT_BFM`` if set, else None (the procedural model)."""
    if path is None or str(path) == "":
        path = os.environ.get(BFM_ENV_VAR) or None
    return None if path is None else os.path.expanduser(str(path))


def _read_mat(path: str) -> dict[str, Any]:
    """The BFM variables of a MATLAB v5 file; v7.3 (HDF5) and unreadable files raise FaceModelError."""
    from scipy.io import loadmat  # scipy is only needed for user-supplied BFM files

    v73 = (
        f"{path!r} is a MATLAB v7.3 (HDF5) file, which scipy cannot read; re-save it as v5 (MATLAB: save -v7; "
        f"python: scipy.io.savemat) or regenerate it with util/load_mats.py; {_FIX_HINT}"
    )
    with open(path, "rb") as handle:
        head = handle.read(520)
    if head[:8] == HDF5_SIGNATURE or head[512:520] == HDF5_SIGNATURE or head.startswith(b"MATLAB 7.3"):
        raise FaceModelError(v73)
    try:
        # loadmat builds plain numpy arrays from the MAT-file records; nothing is unpickled or executed.
        return loadmat(path, variable_names=_BFM_REQUIRED + _BFM_OPTIONAL)
    except NotImplementedError:
        raise FaceModelError(v73) from None
    except Exception as error:  # noqa: BLE001  (a corrupt file can raise almost anything; report it in one line)
        raise FaceModelError(
            f"cannot read {path!r} as a MATLAB file ({type(error).__name__}: {error}); {_FIX_HINT}"
        ) from None


def load_bfm(
    path: str | os.PathLike | None = None, dtype: torch.dtype = torch.float32, recenter: bool = True
) -> Face3DMM:
    """Load Deep3DFaceRecon's ``BFM_model_front.mat`` (MATLAB v5) as a :class:`Face3DMM`.

    Keys read: ``meanshape`` [1, 3N], ``idBase`` [3N, >=80], ``exBase`` [3N, >=64], ``tri`` [T, 3] (1-based),
    ``keypoints`` [68] (1-based) and, when present, ``meantex`` [1, 3N] with ``texBase`` [3N, >=80]; the first 80 / 64 /
    80 basis columns are kept (Deep3DFaceRecon's truncation). Other keys (point_buf, masks) are ignored.

    Args:
        path: the ``.mat`` file; None reads ``$ANIPORTRAIT_BFM``.
        dtype: floating dtype of the buffers.
        recenter: subtract the mean shape's centroid, as Deep3DFaceRecon's ParametricFaceModel does by default.

    Returns:
        The model in decimetres (``unit_metres`` = 0.1), 0-based triangles and landmark ids.

    Raises:
        FaceModelError: no path, missing or unreadable file (v7.3/HDF5 included), missing keys, wrong shapes or
            out-of-range indices; the one-line message says what to download and where to pass it.
    """
    resolved = resolve_bfm_path(path)
    if resolved is None:
        raise FaceModelError(f"no BFM file given; {_FIX_HINT}")
    if not os.path.isfile(resolved):
        raise FaceModelError(f"BFM file not found: {resolved!r}; {_FIX_HINT}")
    content = _read_mat(resolved)
    missing = [key for key in _BFM_REQUIRED if key not in content]
    if missing:
        raise FaceModelError(f"{resolved!r} lacks the BFM_model_front keys {missing}; {_FIX_HINT}")
    try:
        mean = _as_float64(content["meanshape"], "meanshape")
        if mean.size == 0 or mean.size % 3 or mean.squeeze().ndim != 1:
            raise FaceModelError(f"meanshape must have shape [1, 3N], got {list(mean.shape)}")
        size = mean.size // 3
        mean = mean.reshape(-1, 3)
        arrays = {"mean_shape": (mean - mean.mean(0) if recenter else mean).reshape(-1)}
        bases = [("idBase", "id_base", NUM_ID), ("exBase", "exp_base", NUM_EXP)]
        if "meantex" in content or "texBase" in content:
            if "meantex" not in content or "texBase" not in content:
                raise FaceModelError("meantex and texBase must be present together")
            arrays["mean_tex"] = _as_float64(content["meantex"], "meantex").reshape(-1)
            bases.append(("texBase", "tex_base", NUM_TEX))
        for key, name, columns in bases:
            base = np.asarray(content[key])
            if base.ndim != 2 or base.shape[0] != 3 * size or base.shape[1] < columns:
                raise FaceModelError(
                    f"{key} must have shape [3N, >={columns}] = [{3 * size}, >={columns}], got {list(base.shape)}"
                )
            arrays[name] = base[:, :columns]  # Deep3DFaceRecon's truncation
        tri = np.asarray(content["tri"])
        if tri.ndim != 2 or tri.shape[1] != 3:
            raise FaceModelError(f"tri must have shape [T, 3], got {list(tri.shape)}")
        keypoints = np.asarray(content["keypoints"])
        if keypoints.size != NUM_LANDMARKS or keypoints.squeeze().ndim != 1:
            raise FaceModelError(f"keypoints must hold {NUM_LANDMARKS} vertex ids, got shape {list(keypoints.shape)}")
        # MATLAB indices are 1-based (Deep3DFaceRecon subtracts 1 when loading).
        triangles = _as_index(_as_float64(tri, "tri") - 1, "tri (1-based)", size)
        landmarks = _as_index(_as_float64(keypoints, "keypoints").reshape(-1) - 1, "keypoints (1-based)", size)
        return Face3DMM(
            triangles=triangles, landmark_index=landmarks, unit_metres=BFM_UNIT_METRES, dtype=dtype, **arrays
        )
    except FaceModelError as error:  # the array checks above and in Face3DMM: add the file and the fix
        raise FaceModelError(f"{resolved!r}: {error}; {_FIX_HINT}") from None


def build_face_model(path: str | os.PathLike | None = None, dtype: torch.dtype = torch.float32) -> Face3DMM:
    """The BFM when a path (or ``$ANIPORTRAIT_BFM``) is given, else the procedural stand-in (:func:`procedural_3dmm`)."""
    resolved = resolve_bfm_path(path)
    return procedural_3dmm(dtype=dtype) if resolved is None else load_bfm(resolved, dtype=dtype)


# ---------------------------------------------------------------------------------------------------------------------
# Procedural 3DMM: a face-shaped surface patch in BFM_model_front's layout, generated from scratch (no BFM data)
#
# Geometry is built in millimetres in a face frame with the eye line at y = 0 (x to the subject's left, y up, z out
# of the face) and converted to decimetres (BFM units) at the end, after recentring like Deep3DFaceRecon.

# The 68 landmarks of an average frontal face (mm), iBUG 300-W order. Jaw 0-16 runs from the subject's right ear
# (image left, -x) over the chin; brows 17-21 (right) and 22-26 (left) run outer to inner to outer; nose 27-30 root to
# tip, 31-35 nostrils; eyes 36-41 (right: outer, upper x2, inner, lower x2) and 42-47 (left: inner, upper x2, outer,
# lower x2); outer lips 48-59 from the right corner over the upper lip, inner lips 60-67.
# fmt: off
FACE_TEMPLATE_MM = (
    # jaw 0-16
    (-70.0, -5.0), (-69.0, -20.0), (-67.0, -35.0), (-64.0, -50.0), (-58.0, -64.0), (-49.0, -77.0), (-38.0, -87.0),
    (-22.0, -95.0), (0.0, -98.0), (22.0, -95.0), (38.0, -87.0), (49.0, -77.0), (58.0, -64.0), (64.0, -50.0),
    (67.0, -35.0), (69.0, -20.0), (70.0, -5.0),
    # brows 17-26
    (-55.0, 12.0), (-45.0, 19.0), (-33.0, 22.0), (-21.0, 21.0), (-10.0, 18.0),
    (10.0, 18.0), (21.0, 21.0), (33.0, 22.0), (45.0, 19.0), (55.0, 12.0),
    # nose 27-35
    (0.0, 2.0), (0.0, -10.0), (0.0, -20.0), (0.0, -30.0),
    (-14.0, -37.0), (-7.0, -39.0), (0.0, -40.0), (7.0, -39.0), (14.0, -37.0),
    # eyes 36-47
    (-45.0, 0.0), (-37.0, 5.0), (-23.0, 5.0), (-15.0, 0.0), (-23.0, -4.0), (-37.0, -4.0),
    (15.0, 0.0), (23.0, 5.0), (37.0, 5.0), (45.0, 0.0), (37.0, -4.0), (23.0, -4.0),
    # outer lips 48-59, inner lips 60-67
    (-25.0, -58.0), (-16.0, -52.0), (-7.0, -49.0), (0.0, -50.0), (7.0, -49.0), (16.0, -52.0), (25.0, -58.0),
    (16.0, -65.0), (7.0, -68.0), (0.0, -69.0), (-7.0, -68.0), (-16.0, -65.0),
    (-21.0, -58.0), (-7.0, -56.0), (0.0, -56.5), (7.0, -56.0), (21.0, -58.0), (7.0, -60.5), (0.0, -61.0),
    (-7.0, -60.5),
)
# fmt: on
TEMPLATE_HALF_WIDTH_MM = 70.0  # |x| of the jaw landmarks 0 and 16
TEMPLATE_NOSE_TIP = 30  # landmark id of the nose tip
# The face patch: the unit square grid mapped onto an ellipse with these semi-axes and centre (mm).
PATCH_SEMI_AXES_MM = (78.0, 88.0)
PATCH_CENTRE_Y_MM = -15.0
# Base depth: an ellipsoid cap z = DEPTH * sqrt(1 - (x / AX)^2 - ((y - CY) / AY)^2) (mm); cheeks recede from the nose.
BASE_DEPTH_MM, BASE_AXES_MM, BASE_CENTRE_Y_MM = 70.0, (88.0, 112.0), -12.0
MOUTH_LINE_MM = -58.0  # y of the lip line (the corners 48 and 54)
BROW_LIFT_FROM_MM, BROW_LIFT_FULL_MM = 6.0, 12.0  # the brow raise ramps up between these heights (above the lids)
LIP_SOFTNESS_MM = 1.0  # width of the logistic step that separates upper from lower lip motion
PROCEDURAL_MIN_GRID = 25  # smallest grid side (625 vertices) that still resolves 68 distinct landmark vertices
# Leading expression amplitudes (mm per unit coefficient): mouth open (lower lip drop), smile, eye closure (1 brings the
# upper lid landmarks down to the lower ones), brow raise. Sized like the synthetic data engine's (data/synth.py: jaw
# drop 0.012 canonical units at e0 = 1.5, brows 0.009 per unit, e2 = 1 closes the eyes).
MOUTH_OPEN_MM, SMILE_MM, EYE_CLOSE_MM, BROW_RAISE_MM = 9.0, 6.0, 11.0, 10.0
BUMP_EXPRESSION_MM = 1.5  # amplitude of the first small localized expression bump (decays with the index)
BUMP_IDENTITY_MM = 1.5  # amplitude of the first random smooth identity field (decays with the index)
SKIN_RGB, LIP_RGB, EYE_RGB, BROW_RGB = (
    (200.0, 160.0, 140.0),
    (170.0, 90.0, 90.0),
    (90.0, 70.0, 60.0),
    (80.0, 60.0, 50.0),
)


def _bump(x: np.ndarray, y: np.ndarray, centre: tuple[float, float], radii: tuple[float, float]) -> np.ndarray:
    """Compactly supported smooth bump (1 - q)^3 with q the squared elliptical distance; C2, zero for q >= 1."""
    q = ((x - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2
    return np.clip(1.0 - q, 0.0, None) ** 3


def _gauss(x: np.ndarray, y: np.ndarray, centre: tuple[float, float], sigma: tuple[float, float]) -> np.ndarray:
    return np.exp(-0.5 * (((x - centre[0]) / sigma[0]) ** 2 + ((y - centre[1]) / sigma[1]) ** 2))


def _step(value: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Smoothstep from 0 at ``lo`` to 1 at ``hi`` (either order)."""
    t = np.clip((value - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _logistic(value: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * value))


def _nose_height(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Nose relief (mm): a ridge from the root (y = 8) growing to the tip (y = -28), falling off under it."""
    t = _step(y, 8.0, -28.0)
    under = _step(y, -30.0, -42.0)
    width = 5.0 + 5.0 * t
    return (6.0 + 18.0 * t) * (1.0 - under) * _step(y, 12.0, 8.0) * np.exp(-0.5 * (x / width) ** 2)


def _mean_depth(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Depth z(x, y) of the mean face (mm): ellipsoid cap plus nose, eye sockets, brows, lips, chin, cheekbones."""
    ax, ay = BASE_AXES_MM
    z = BASE_DEPTH_MM * np.sqrt(np.clip(1.0 - (x / ax) ** 2 - ((y - BASE_CENTRE_Y_MM) / ay) ** 2, 0.02, 1.0))
    z = z + _nose_height(x, y)
    for side in (-1.0, 1.0):
        z = z + 7.0 * _gauss(x, y, (13.0 * side, -35.0), (5.0, 5.0))  # alar wings
        z = z - 8.0 * _gauss(x, y, (30.0 * side, 1.0), (13.0, 8.0))  # eye sockets
        z = z + 3.0 * _gauss(x, y, (30.0 * side, 0.0), (9.0, 5.0))  # eyeballs under the lids
        z = z + 4.0 * _gauss(x, y, (30.0 * side, 17.0), (18.0, 6.0))  # brow ridges
        z = z + 4.0 * _gauss(x, y, (42.0 * side, -22.0), (14.0, 12.0))  # cheekbones
    z = z + 5.0 * _gauss(x, y, (0.0, -52.0), (16.0, 4.0)) + 5.0 * _gauss(x, y, (0.0, -64.0), (15.0, 4.0))  # lips
    z = z - 2.0 * _gauss(x, y, (0.0, MOUTH_LINE_MM - 0.5), (18.0, 1.5))  # lip line
    return z + 6.0 * _gauss(x, y, (0.0, -88.0), (16.0, 9.0))  # chin


def _patch_grid(side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y [side^2] (mm) of the square grid mapped onto the face ellipse, and its triangles [2 (side-1)^2, 3]."""
    u, v = np.meshgrid(np.linspace(-1.0, 1.0, side), np.linspace(-1.0, 1.0, side))  # row = v (bottom to top)
    # Square-to-disc map (x = u sqrt(1 - v^2 / 2), y = v sqrt(1 - u^2 / 2)): smooth, orientation preserving.
    x = PATCH_SEMI_AXES_MM[0] * u * np.sqrt(1.0 - 0.5 * v**2)
    y = PATCH_CENTRE_Y_MM + PATCH_SEMI_AXES_MM[1] * v * np.sqrt(1.0 - 0.5 * u**2)
    a = (np.arange(side - 1)[:, None] * side + np.arange(side - 1)[None]).reshape(-1)
    b, c = a + 1, a + side
    # Counter-clockwise seen from +z (the front): (a, b, d) and (a, d, c) with d = c + 1.
    triangles = np.concatenate([np.stack([a, b, c + 1], 1), np.stack([a, c + 1, c], 1)])
    return x.reshape(-1), y.reshape(-1), triangles.astype(np.int64)


def _snap_landmarks(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """[68] distinct vertex ids nearest (in the frontal projection) to the template, greedily in landmark order."""
    taken = np.zeros(len(x), dtype=bool)
    index = np.empty(NUM_LANDMARKS, dtype=np.int64)
    for k, (tx, ty) in enumerate(FACE_TEMPLATE_MM):
        distance = np.where(taken, np.inf, np.hypot(x - tx, y - ty))
        index[k] = int(np.argmin(distance))
        taken[index[k]] = True
    return index


def _expression_fields(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[N, 3, 64] expression displacement fields (mm per unit coefficient); see :func:`procedural_3dmm`."""
    zero = np.zeros_like(x)
    fields = np.zeros((len(x), 3, NUM_EXP))
    below, above = _logistic((MOUTH_LINE_MM - y) / LIP_SOFTNESS_MM), _logistic((y - MOUTH_LINE_MM) / LIP_SOFTNESS_MM)
    # 0 mouth open: the lower lip and the skin under it drop and recede, the upper lip lifts a little.
    lower = _bump(x, y, (0.0, -72.0), (42.0, 30.0)) * below
    upper = _bump(x, y, (0.0, -50.0), (32.0, 12.0)) * above
    fields[..., 0] = MOUTH_OPEN_MM * np.stack([zero, 0.25 * upper - lower, -0.3 * lower], 1)
    # 1 smile: the mouth corners move out, up and back; the cheeks rise.
    for side in (-1.0, 1.0):
        corner = _bump(x, y, (25.0 * side, MOUTH_LINE_MM + 1.0), (16.0, 14.0))
        cheek = _bump(x, y, (38.0 * side, -38.0), (20.0, 18.0))
        fields[..., 1] += SMILE_MM * (
            corner[:, None] * np.array([0.5 * side, 0.8, -0.3]) + 0.3 * cheek[:, None] * np.array([0.0, 1.0, 0.5])
        )
    # 2 eyes closed: the upper lids come down over the eyes, the lower lids rise slightly.
    for side in (-1.0, 1.0):
        upper_lid = _bump(x, y, (30.0 * side, 3.0), (30.0, 14.0)) * _logistic(y / LIP_SOFTNESS_MM)
        lower_lid = _bump(x, y, (30.0 * side, -3.0), (22.0, 8.0)) * _logistic(-y / LIP_SOFTNESS_MM)
        fields[:, 1, 2] += EYE_CLOSE_MM * (0.17 * lower_lid - upper_lid)
    # 3 brows raised: the brows and the forehead above them move up; nothing below the upper lids' line moves.
    envelope = 1.0 - _step(np.abs(x), 55.0, 72.0)
    lift = _step(y, BROW_LIFT_FROM_MM, BROW_LIFT_FULL_MM) * (1.0 - 0.6 * _step(y, 35.0, 60.0))
    fields[:, 1, 3] = BROW_RAISE_MM * envelope * lift
    # 4..63: small localized bumps with random centres, sizes and directions, decaying like PCA components.
    for k in range(len(EXPRESSION_MEANING), NUM_EXP):
        radius = rng.uniform(0.3, 0.8, size=2)
        centre = (
            rng.uniform(-0.6, 0.6) * PATCH_SEMI_AXES_MM[0],
            PATCH_CENTRE_Y_MM + rng.uniform(-0.6, 0.6) * PATCH_SEMI_AXES_MM[1],
        )
        direction = rng.normal(size=3)
        amplitude = BUMP_EXPRESSION_MM / (1.0 + (k - len(EXPRESSION_MEANING)) / 12.0)
        bump = _bump(x, y, centre, (radius[0] * 40.0, radius[1] * 40.0))
        fields[..., k] = amplitude * bump[:, None] * direction / np.linalg.norm(direction)
    return fields


def _identity_fields(x: np.ndarray, y: np.ndarray, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[N, 3, 80] identity displacement fields (mm per unit coefficient); see :func:`procedural_3dmm`."""
    zero = np.zeros_like(x)
    eyes = sum(np.sign(x) * _bump(x, y, (30.0 * side, 0.0), (25.0, 16.0)) for side in (-1.0, 1.0))
    cheeks = sum(_bump(x, y, (45.0 * side, -30.0), (25.0, 25.0)) for side in (-1.0, 1.0))
    nose = _nose_height(x, y) + sum(7.0 * _gauss(x, y, (13.0 * side, -35.0), (5.0, 5.0)) for side in (-1.0, 1.0))
    chin = _bump(x, y, (0.0, -88.0), (35.0, 25.0))
    leading = [
        (0.05 * x, zero, zero),  # face width
        (zero, 0.05 * (y - PATCH_CENTRE_Y_MM), zero),  # face length
        (zero, zero, 0.06 * z),  # face depth
        (zero, zero, 0.25 * nose),  # nose size
        (0.06 * x * _step(y, -40.0, -90.0), zero, zero),  # jaw width
        (3.0 * eyes, zero, zero),  # eye spacing
        (0.08 * x * _bump(x, y, (0.0, MOUTH_LINE_MM), (35.0, 18.0)), zero, zero),  # mouth width
        (zero, -2.0 * chin, 4.0 * chin),  # chin protrusion
        (zero, zero, -4.0 * _step(y, 20.0, 70.0) * np.clip((y - 20.0) / 50.0, 0.0, None)),  # forehead slope
        (zero, zero, 3.0 * cheeks),  # cheek fullness
    ]
    fields = np.zeros((len(x), 3, NUM_ID))
    for k, field in enumerate(leading):
        fields[..., k] = np.stack(field, 1)
    # 10..79: smooth mirror-symmetric global fields (x odd, y and z even in x, like the leading BFM components), three
    # low-frequency waves per axis, decaying like PCA components.
    for k in range(len(leading), NUM_ID):
        amplitude = BUMP_IDENTITY_MM / (1.0 + (k - len(leading)) / 5.0)
        for axis in range(3):
            freq, phase = rng.uniform(0.2, 1.5, size=(3, 2)), rng.uniform(0.0, 2 * np.pi, size=3)
            across = np.sin if axis == 0 else np.cos
            wave = across(2 * np.pi * freq[:, :1] * x / 200.0) * np.cos(
                2 * np.pi * freq[:, 1:] * y / 200.0 + phase[:, None]
            )
            fields[:, axis, k] = amplitude / np.sqrt(3.0) * wave.sum(0)
    return fields


def _texture(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Mean RGB [N, 3] (0..255: skin, lips, eyes, brows) and texture fields [N, 3, 80] (tints, then smooth fields)."""
    lips = np.clip(_gauss(x, y, (0.0, -52.0), (16.0, 4.0)) + _gauss(x, y, (0.0, -64.0), (15.0, 4.0)), 0.0, 1.0)
    eyes = sum(_bump(x, y, (30.0 * side, 0.0), (14.0, 4.5)) for side in (-1.0, 1.0))
    brows = sum(_bump(x, y, (32.0 * side, 19.0), (24.0, 4.0)) for side in (-1.0, 1.0))
    mean = np.array(SKIN_RGB) * np.ones((len(x), 1))
    for weight, colour in ((lips, LIP_RGB), (eyes, EYE_RGB), (brows, BROW_RGB)):
        mean = mean + weight[:, None] * (np.array(colour) - mean)
    fields = np.zeros((len(x), 3, NUM_TEX))
    for channel in range(3):
        fields[:, channel, channel] = 10.0  # red, green, blue tint
    fields[:, :, 3] = 15.0  # brightness
    for k in range(4, NUM_TEX):
        freq, phase = rng.uniform(-1.5, 1.5, size=2), rng.uniform(0.0, 2 * np.pi)
        wave = np.cos(2 * np.pi * (freq[0] * x + freq[1] * y) / 200.0 + phase)
        fields[..., k] = 5.0 / (1.0 + (k - 4) / 10.0) * wave[:, None] * rng.uniform(0.5, 1.0, size=3)
    return mean, fields


def procedural_3dmm(seed: int = 0, num_vertices: int = 3025, dtype: torch.dtype = torch.float32) -> Face3DMM:
    """A deterministic face-shaped 3DMM in BFM_model_front's layout, generated from scratch (no BFM data).

    The mesh is a square grid of about ``num_vertices`` vertices (an odd side, so the midline x = 0 is a vertex
    column) mapped onto an elliptical face patch (about 16 x 18 cm) with an ellipsoidal depth profile plus nose, eye
    sockets, brow ridges, lips, chin and cheekbones; decimetres and axes as BFM (x to the subject's left, y up, z out
    of the face), centroid at the origin. The 68 landmarks are the distinct vertices nearest to an average frontal
    68-point layout (:data:`FACE_TEMPLATE_MM`).

    Identity directions (per unit coefficient, smooth and global): 0 face width, 1 face length, 2 depth, 3 nose size,
    4 jaw width, 5 eye spacing, 6 mouth width, 7 chin protrusion, 8 forehead slope, 9 cheek fullness, 10-79 random
    mirror-symmetric low-frequency fields with decaying amplitude. Expression directions (localized, compact support):
    **0 opens the mouth** (lower lip drops 9 mm), **1 smiles** (mouth corners out and up), **2 closes the eyes**
    (at 1 the upper lids meet the lower ones), **3 raises the brows** (10 mm), 4-63 small random localized bumps with decaying amplitude
    (the synthetic data engine uses the same meaning, :data:`EXPRESSION_MEANING`). Texture: mean skin/lip/eye/brow
    colours (0..255), then RGB tints, brightness and smooth random fields.

    Args:
        seed: seeds the random fields (identity 10-79, expression 4-63, texture 4-79); the mean, the leading
            directions and the landmarks do not depend on it.
        num_vertices: target vertex count, rounded to an odd square grid (at least 25^2).
        dtype: floating dtype of the buffers.

    Example:
        >>> face = procedural_3dmm()
        >>> open_mouth = face.landmarks(None, torch.eye(64)[:1])  # coefficient 0 = 1: mouth open
    """
    side = 2 * round((float(np.sqrt(max(num_vertices, 1))) - 1.0) / 2.0) + 1  # odd: a vertex column on x = 0
    if side < PROCEDURAL_MIN_GRID:
        raise ValueError(f"num_vertices must be at least {PROCEDURAL_MIN_GRID**2}, got {num_vertices}")
    rng = np.random.default_rng(seed)
    x, y, triangles = _patch_grid(side)
    z = _mean_depth(x, y)
    landmarks = _snap_landmarks(x, y)
    mean = np.stack([x, y, z], 1)
    mean = mean - mean.mean(0)  # recentre like Deep3DFaceRecon's ParametricFaceModel
    exp_fields = _expression_fields(x, y, rng)
    id_fields = _identity_fields(x, y, z, rng)
    mean_tex, tex_fields = _texture(x, y, rng)
    mm = 1e-3 / BFM_UNIT_METRES  # model units per millimetre
    return Face3DMM(
        mean_shape=mm * mean.reshape(-1),
        id_base=mm * id_fields.reshape(-1, NUM_ID),
        exp_base=mm * exp_fields.reshape(-1, NUM_EXP),
        triangles=triangles,
        landmark_index=landmarks,
        mean_tex=mean_tex.reshape(-1),
        tex_base=tex_fields.reshape(-1, NUM_TEX),
        unit_metres=BFM_UNIT_METRES,
        dtype=dtype,
    )


# ---------------------------------------------------------------------------------------------------------------------
# Similarity registration (Umeyama)


def umeyama(
    source: Tensor, target: Tensor, weights: Tensor | None = None, with_scale: bool = True
) -> tuple[Tensor, Tensor, Tensor]:
    """Closed-form least-squares similarity ``target ~ scale * R @ source + t`` (Umeyama 1991), batched.

    The rotation is always proper (det +1): a reflection in the data is fitted by the best proper rotation instead.

    Args:
        source: [..., K, 3] points, K >= 3, not all collinear.
        target: [..., K, 3] corresponding points.
        weights: optional [..., K] non-negative point weights (None = uniform).
        with_scale: fit the scale (else it is 1).

    Returns:
        scale [...], rotation [..., 3, 3], translation [..., 3], in ``target``'s dtype (computed in float64).

    Example:
        >>> scale, rotation, translation = umeyama(face_landmarks, body_landmarks)
        >>> fitted = scale * face_landmarks @ rotation.T + translation
    """
    if source.shape != target.shape or source.ndim < 2 or source.shape[-1] != 3 or source.shape[-2] < 3:
        raise ValueError(
            f"source and target must both have shape [..., K >= 3, 3], got {list(source.shape)} and "
            f"{list(target.shape)}"
        )
    src, dst = source.double(), target.double()
    w = torch.ones(src.shape[:-1], dtype=torch.float64, device=src.device) if weights is None else weights.double()
    if w.shape != src.shape[:-1] or (w < 0).any() or (w.sum(-1) <= 0).any():
        raise ValueError(f"weights must be non-negative with shape {list(src.shape[:-1])} and a positive sum")
    w = (w / w.sum(-1, keepdim=True))[..., None]
    mu_src, mu_dst = (w * src).sum(-2), (w * dst).sum(-2)
    xs, xd = src - mu_src[..., None, :], dst - mu_dst[..., None, :]
    covariance = (w * xd).transpose(-1, -2) @ xs  # [..., 3, 3] = sum_k w_k d_k s_k^T
    u, sigma, vt = torch.linalg.svd(covariance)
    var_src = (w * xs.square()).sum((-2, -1))
    if (sigma[..., 1] <= 1e-12 * sigma[..., 0].clamp_min(1e-300)).any() or (var_src <= 0).any():
        raise ValueError("umeyama: the points are degenerate (coincident or collinear)")
    # Flip the last singular direction when U V^T would be a reflection.
    sign = torch.sign(torch.linalg.det(u) * torch.linalg.det(vt))
    diagonal = torch.ones_like(sigma)
    diagonal[..., 2] = sign
    rotation = u @ torch.diag_embed(diagonal) @ vt
    scale = (sigma * diagonal).sum(-1) / var_src if with_scale else torch.ones_like(var_src)
    translation = mu_dst - scale[..., None] * (rotation @ mu_src[..., None])[..., 0]
    return scale.to(target.dtype), rotation.to(target.dtype), translation.to(target.dtype)


def register_to_body(
    face: Face3DMM, body_landmarks: Tensor, indices: Sequence[int] | None = None, id: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """The similarity that maps the 3DMM face onto the SMPL head in canonical space (landmark Umeyama).

    Args:
        face: the 3DMM.
        body_landmarks: [68, 3] (or [B, 68, 3]) SMPL-head landmarks in canonical units, e.g. from
            :func:`smpl_landmarks` or :func:`rig_face_landmarks`.
        indices: landmark ids to fit (None = all 68; e.g. ``range(17, 68)`` leaves out the jaw contour).
        id: optional [B, 80] identity coefficients whose landmarks are fitted instead of the mean face's
            (needs a batched ``body_landmarks``).

    Returns:
        scale [] or [B], rotation [3, 3] or [B, 3, 3], translation [3] or [B, 3] with
        ``canonical = scale * rotation @ face_point + translation``.
    """
    batched = body_landmarks.ndim == 3
    if body_landmarks.shape[-2:] != (NUM_LANDMARKS, 3) or body_landmarks.ndim not in (2, 3):
        raise ValueError(f"body_landmarks must have shape [68, 3] or [B, 68, 3], got {list(body_landmarks.shape)}")
    if id is not None and not batched:
        raise ValueError("register_to_body: id needs body_landmarks of shape [B, 68, 3]")
    source = face.landmarks(id, None).to(body_landmarks.device)
    source = source if batched else source[0]
    if batched and id is None:
        source = source.expand(len(body_landmarks), -1, -1)
    keep = list(range(NUM_LANDMARKS)) if indices is None else list(indices)
    return umeyama(source[..., keep, :].to(body_landmarks.dtype), body_landmarks[..., keep, :])


class RegisteredFace(nn.Module):
    """A :class:`Face3DMM` with the similarity that places it in the generator's canonical (neutral-pose) space.

    Buffers ``scale`` [], ``rotation`` [3, 3] and ``translation`` [3] are non-persistent like the face's (both are
    re-derived from the user's files). ``canonical = scale * rotation @ face_point + translation``. A per-identity
    registration (one similarity per batch item: scale [B], rotation [B, 3, 3], translation [B, 3], e.g. fitted to
    each identity's body shape) applies item b's similarity to batch item b.

    Example:
        >>> body = BodyModel.procedural()
        >>> registered = RegisteredFace.from_body_landmarks(procedural_3dmm(), rig_face_landmarks(body))
        >>> face_in_canonical_space = registered.canonical_vertices(id, expression)  # [B, N, 3]
    """

    def __init__(self, face: Face3DMM, scale: Tensor | float, rotation: Tensor, translation: Tensor) -> None:
        super().__init__()
        self.face = face
        dtype = face.mean_shape.dtype
        rotation, translation, scale = torch.as_tensor(rotation), torch.as_tensor(translation), torch.as_tensor(scale)
        batch = () if rotation.ndim == 2 else rotation.shape[:1]
        if rotation.shape[-2:] != (3, 3) or translation.shape != (*batch, 3) or scale.numel() != max([1, *batch]):
            raise ValueError(
                "RegisteredFace needs a scalar scale, a [3, 3] rotation and a [3] translation (or [B], [B, 3, 3] and "
                "[B, 3] for a per-identity registration)"
            )
        self.register_buffer("scale", scale.to(dtype).reshape(batch), persistent=False)
        self.register_buffer("rotation", rotation.to(dtype), persistent=False)
        self.register_buffer("translation", translation.to(dtype), persistent=False)

    @classmethod
    def from_body_landmarks(
        cls, face: Face3DMM, body_landmarks: Tensor, indices: Sequence[int] | None = None
    ) -> RegisteredFace:
        """Register the mean face to [68, 3] canonical SMPL-head landmarks, or per identity to [B, 68, 3] (see
        :func:`register_to_body`)."""
        return cls(face, *register_to_body(face, body_landmarks, indices))

    @property
    def per_identity(self) -> bool:
        """True for a registration with one similarity per batch item."""
        return self.rotation.ndim == 3

    def to_canonical(self, points: Tensor) -> Tensor:
        """[..., 3] 3DMM-space points -> canonical units ([B, N, 3] for a per-identity registration)."""
        if self.per_identity:
            return self.scale[:, None, None] * points @ self.rotation.transpose(-1, -2) + self.translation[:, None]
        return self.scale * points @ self.rotation.T + self.translation

    def canonical_vertices(self, id: Tensor | None = None, expression: Tensor | None = None) -> Tensor:
        """The 3DMM face S(id, expression) in canonical units [B, N, 3] (the x^p-space face of paper Eq. 10)."""
        return self.to_canonical(self.face.vertices(id, expression))

    def canonical_landmarks(self, id: Tensor | None = None, expression: Tensor | None = None) -> Tensor:
        """The 68 landmarks of S(id, expression) in canonical units [B, 68, 3]."""
        return self.to_canonical(self.face.landmarks(id, expression))

    def canonical_expression_offsets(self, expression: Tensor) -> Tensor:
        """``B_exp expression`` rotated and scaled into canonical units [B, N, 3] (a displacement: no translation)."""
        offsets = self.face.expression_offsets(expression)
        if self.per_identity:
            return self.scale[:, None, None] * offsets @ self.rotation.transpose(-1, -2)
        return self.scale * offsets @ self.rotation.T

    @torch.no_grad()
    def imitation_targets(
        self, points: Tensor, id: Tensor, expression: Tensor, chunk: int = 1024
    ) -> tuple[Tensor, Tensor]:
        """Targets of the 3DMM imitation loss (paper Eq. 10) for neutral-pose points x^p.

        Each point takes the nearest vertex x^p_ref of S(id, expression) in canonical space; the target deformation
        is ``-B_exp expression`` at that vertex, so ``loss = |D_e(x^p) - x^p - delta|^2`` over the points whose
        ``distance`` passes the caller's threshold. No gradient flows (the 3DMM is a fixed teacher).

        Args:
            points: [B, P, 3] x^p in canonical units.
            id: [B, 80]; expression: [B, 64].
            chunk: points per distance block (memory B * chunk * N).

        Returns:
            delta [B, P, 3] and distance [B, P] (canonical units), in the face's dtype.
        """
        if points.ndim != 3 or points.shape[-1] != 3 or len(points) != len(expression):
            raise ValueError(f"points must have shape [B, P, 3] with B = {len(expression)}, got {list(points.shape)}")
        vertices = self.canonical_vertices(id, expression)
        offsets = -self.canonical_expression_offsets(expression)
        points = points.to(vertices.dtype)
        deltas, distances = [], []
        for start in range(0, points.shape[1], chunk):
            distance, nearest = torch.cdist(points[:, start : start + chunk], vertices).min(-1)
            deltas.append(torch.gather(offsets, 1, nearest[..., None].expand(-1, -1, 3)))
            distances.append(distance)
        return torch.cat(deltas, 1), torch.cat(distances, 1)


# ---------------------------------------------------------------------------------------------------------------------
# SMPL-head landmarks in canonical space


def load_landmark_bary(source: Any, num_faces: int = SMPL_NUM_FACES) -> np.ndarray:
    """Validate landmark barycentrics in the release's format (``smpl_face_landmarks_bary.npy``).

    Args:
        source: a [68, 4] array (column 0 = triangle id stored as a float, columns 1-3 = barycentric weights of the
            triangle's three vertices) or a ``.npy`` file holding one (read without pickle).
        num_faces: triangles of the mesh it refers to (13776 for SMPL and the procedural rig).

    Returns:
        [68, 4] float64 copy.
    """
    hint = "expected the release's smpl_face_landmarks_bary.npy layout [68, 4] = (triangle id, b0, b1, b2)"
    if isinstance(source, (str, os.PathLike)):
        try:
            source = np.load(source, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise FaceModelError(f"cannot read landmark barycentrics {os.fspath(source)!r}: {error}; {hint}") from None
    bary = _as_float64(source, "landmark barycentrics")
    if bary.shape != (NUM_LANDMARKS, 4):
        raise FaceModelError(f"landmark barycentrics have shape {list(bary.shape)}; {hint}")
    ids = bary[:, 0]
    if not np.array_equal(ids, np.round(ids)) or ids.min() < 0 or ids.max() >= num_faces:
        raise FaceModelError(f"landmark triangle ids must be integers in 0..{num_faces - 1}; {hint}")
    weights = bary[:, 1:]
    if weights.min() < -1e-6 or np.abs(weights.sum(1) - 1.0).max() > 1e-4:
        raise FaceModelError(f"landmark barycentric weights must be non-negative and sum to 1; {hint}")
    return bary.copy()


def _chain_rotation(rotations: Tensor, joint: int) -> Tensor:
    """Global rotation [3, 3] of ``joint`` from local rotations [24, 3, 3] along SMPL's kinematic tree."""
    chain = []
    while joint >= 0:
        chain.append(joint)
        joint = SMPL_PARENTS[joint]
    out = torch.eye(3, dtype=rotations.dtype, device=rotations.device)
    for j in reversed(chain):
        out = out @ rotations[j]
    return out


def canonical_body_vertices(body: BodyModel, betas: Tensor) -> Tensor:
    """All SMPL vertices of the canonical mean pose in canonical units [B, V, 3] (what inverse skinning maps to)."""
    dtype = body.mean_pose.dtype
    betas = betas.to(dtype)
    rotations = body.mean_pose.expand(len(betas), -1, -1, -1)
    out = body.smpl_model(betas=betas, global_orient=rotations[:, :1], body_pose=rotations[:, 1:])
    return to_face_frame(out.vertices, out.joints[:, NECK_JOINT])


def smpl_landmarks(body: BodyModel, bary: Any, betas: Tensor | None = None) -> Tensor:
    """68 face landmarks on the canonical (mean-pose) SMPL mesh, in canonical units.

    Only meaningful with real SMPL topology for the release's file; for the procedural rig use
    :func:`rig_landmark_bary` (or :func:`rig_face_landmarks`).

    Args:
        body: the body model (its ``smpl_model.faces_tensor`` is the topology the barycentrics refer to).
        bary: [68, 4] barycentrics or a ``.npy`` path, see :func:`load_landmark_bary`.
        betas: [10] or [B, 10] SMPL shape (None = zeros).

    Returns:
        [68, 3] (unbatched betas) or [B, 68, 3], model dtype, differentiable in betas.
    """
    faces = body.smpl_model.faces_tensor
    bary = torch.from_numpy(load_landmark_bary(bary, num_faces=len(faces))).to(body.mean_pose)
    unbatched = betas is None or betas.ndim == 1
    betas = body.mean_pose.new_zeros(1, 10) if betas is None else (betas[None] if unbatched else betas)
    if betas.ndim != 2 or betas.shape[1] != 10:
        raise ValueError(f"betas must have shape [10] or [B, 10], got {list(betas.shape)}")
    vertices = canonical_body_vertices(body, betas)
    corners = vertices[:, faces[bary[:, 0].long()]]  # [B, 68, 3 corners, 3]
    landmarks = (bary[None, :, 1:, None] * corners).sum(2)
    return landmarks[0] if unbatched else landmarks


# Jaw landmarks 0/16 sit at this fraction of the rig head's half-width (the face outline in a frontal view).
RIG_FACE_WIDTH_FRACTION = 0.9
RIG_HEAD_WEIGHT = 0.5  # vertices skinned at least this much to the head joint form "the head"


def rig_landmark_bary(body: BodyModel) -> np.ndarray:
    """68 face landmarks on the procedural rig's head, as barycentrics in the release's [68, 4] format.

    The release's barycentrics index SMPL's triangles and land anywhere on the rig, whose topology differs, so the
    rig gets its own, derived from its geometry alone: in the head joint's frame of the canonical mean pose (betas 0),
    the average 68-point layout :data:`FACE_TEMPLATE_MM` is scaled so the jaw points span
    RIG_FACE_WIDTH_FRACTION of the head's width, anchored at the nose tip (the head vertex farthest forward), and
    projected along the head's -z axis onto the front-most triangle. Works on any mesh with a head in front of z.

    Returns:
        [68, 4] float64 (triangle id, b0, b1, b2) for :func:`smpl_landmarks`.
    """
    with torch.no_grad():
        vertices = canonical_body_vertices(body, body.mean_pose.new_zeros(1, 10))[0].double()
        head_rotation = _chain_rotation(body.mean_pose.double(), HEAD_JOINT)
    local = (vertices @ head_rotation).cpu().numpy()  # row v @ R = R^T v: coordinates in the head frame
    faces = body.smpl_model.faces_tensor.cpu().numpy()
    head = body.smpl_model.lbs_weights[:, HEAD_JOINT].cpu().numpy() >= RIG_HEAD_WEIGHT
    if head.sum() < 3:
        raise ValueError("rig_landmark_bary: the body has no head vertices (lbs weight of joint 15)")
    head_points = local[head]
    nose = head_points[np.argmax(head_points[:, 2])]
    centre_x = 0.5 * (head_points[:, 0].max() + head_points[:, 0].min())
    scale = RIG_FACE_WIDTH_FRACTION * 0.5 * np.ptp(head_points[:, 0]) / TEMPLATE_HALF_WIDTH_MM
    template = np.array(FACE_TEMPLATE_MM)
    target_x = centre_x + scale * template[:, 0]
    target_y = nose[1] + scale * (template[:, 1] - template[TEMPLATE_NOSE_TIP, 1])
    # Rays along -z: a 2-D point-in-triangle test in the head's (x, y) plane, then the front-most (largest z) hit.
    a, b, c = (local[faces[:, i]] for i in range(3))
    e1, e2 = (b - a)[:, :2], (c - a)[:, :2]
    area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]  # [F]
    px = target_x[:, None] - a[None, :, 0]
    py = target_y[:, None] - a[None, :, 1]  # [68, F]
    with np.errstate(divide="ignore", invalid="ignore"):
        b1 = (px * e2[None, :, 1] - py * e2[None, :, 0]) / area
        b2 = (e1[None, :, 0] * py - e1[None, :, 1] * px) / area
    b0 = 1.0 - b1 - b2
    inside = (np.abs(area) > 1e-14)[None] & (b0 >= 0) & (b1 >= 0) & (b2 >= 0)
    depth = np.where(inside, b0 * a[None, :, 2] + b1 * b[None, :, 2] + b2 * c[None, :, 2], -np.inf)
    hit = np.argmax(depth, axis=1)
    rows = np.arange(NUM_LANDMARKS)
    if not np.isfinite(depth[rows, hit]).all():
        raise ValueError("rig_landmark_bary: a landmark ray misses the mesh (no head in front of the face frame?)")
    weights = np.stack([b0[rows, hit], b1[rows, hit], b2[rows, hit]], 1)
    weights = np.clip(weights, 0.0, None)
    return np.concatenate([hit[:, None].astype(np.float64), weights / weights.sum(1, keepdims=True)], 1)


def rig_face_landmarks(body: BodyModel, betas: Tensor | None = None) -> Tensor:
    """68 face landmarks on the procedural rig's head in canonical units: [68, 3] (or [B, 68, 3] for [B, 10] betas).

    The landmarks are placed once on the betas-0 mesh (:func:`rig_landmark_bary`) and follow the surface for other
    betas. Use these instead of the release's SMPL barycentrics when the body is :meth:`BodyModel.procedural`.
    """
    return smpl_landmarks(body, rig_landmark_bary(body), betas)
