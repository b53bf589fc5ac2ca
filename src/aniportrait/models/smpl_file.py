"""SMPL's array layout and SMPL model files: the joints, the arrays' shapes, and reading a user's file safely.

SMPL needs a registration and its licence forbids redistribution, so nothing here ships SMPL data:
:func:`load_smpl_arrays` reads a user-supplied ``SMPL_NEUTRAL.pkl`` (plain numpy, through a restricted unpickler
that rebuilds numpy arrays and scipy.sparse matrices only) or an ``.npz`` with the same keys.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
from typing import Any

import numpy as np

from aniportrait.constants import SMPL_NUM_FACES, SMPL_NUM_VERTS, SMPL_PARENTS
from aniportrait.errors import UserInputError

__all__ = ["BodyModelError", "load_smpl_arrays", "resolve_smpl_path"]

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
