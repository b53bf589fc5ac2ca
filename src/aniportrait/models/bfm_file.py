"""Reading Deep3DFaceRecon's ``BFM_model_front.mat`` (never shipped: the user supplies it), and choosing the face
model of a run: that file when given, else the procedural stand-in."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from aniportrait.models.face3dmm import (
    _FIX_HINT,
    BFM_ENV_VAR,
    BFM_UNIT_METRES,
    HDF5_SIGNATURE,
    NUM_EXP,
    NUM_ID,
    NUM_LANDMARKS,
    NUM_TEX,
    Face3DMM,
    FaceModelError,
    _as_float64,
    _as_index,
)
from aniportrait.models.face_procedural import procedural_3dmm

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
