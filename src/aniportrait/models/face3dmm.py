"""3D morphable face model (3DMM) for the imitation losses: the model and its layout.

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
non-persistent (they never land in a checkpoint). :mod:`aniportrait.models.bfm_file` reads a user-supplied file (``--bfm PATH`` or
``ANIPORTRAIT_BFM``); :mod:`aniportrait.models.face_procedural` builds a stand-in face in the same layout from
scratch, so that the losses, tests and the synthetic data engine run without it;
:mod:`aniportrait.models.face_registration` places a 3DMM in the generator's canonical space.

Shape letters: ``B`` batch, ``N`` 3DMM vertices (35709 for BFM_model_front), ``T`` triangles, ``P`` query points,
``K`` = 68 landmarks (iBUG 300-W order: jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67).

References: sicxu/Deep3DFaceRecon_pytorch ``models/bfm.py`` (ParametricFaceModel) and ``util/load_mats.py``
(transferBFM09); the AniPortraitGAN paper, sections 3.3.2 and 3.5 (Eq. 6-7, 9-10); AniFaceGAN (the 3DMM imitation
it inherits); Umeyama, "Least-squares estimation of transformation parameters between two point patterns", TPAMI 1991.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from aniportrait.constants import FACE_RADIUS, SMPL_SCALE
from aniportrait.errors import UserInputError

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
