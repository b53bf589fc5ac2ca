"""Files and folders a user names on the command line: safe, bounded loading, and checks that outputs can be written.

- ``.npy`` arrays (keyframes, the release's knn index): the header is read first. Object arrays are refused without
  being unpickled (``allow_pickle=False``), and the shape is checked against a row limit and a byte limit before any
  data is read, so a huge file cannot exhaust memory.
- PyTorch weight files (``.pt``/``.pth``) are read with ``torch.load(weights_only=True)``: tensors and plain
  containers only, no code runs.
- Output paths: :func:`output_file_problem` and :func:`output_folder_problem` say, before any work is done, why a
  file or folder could not be written there.

Every load failure is an :class:`UnreadableFileError` with a one-line message that names the file, what is wrong and
what to do.
"""

from __future__ import annotations

import math
import os
import pickle
import struct
import tempfile
import zipfile

import numpy as np

from aniportrait.errors import UserInputError

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK"  # .npz archives and PyTorch's zip checkpoints
MAX_NPY_BYTES = 1 << 30  # 1 GiB: far above any keyframe or index file


# What torch.load raises on damaged or foreign files (a text file gives KeyError, random bytes IndexError).
TORCH_LOAD_ERRORS = (
    RuntimeError,
    KeyError,
    IndexError,
    EOFError,
    ValueError,
    TypeError,
    AttributeError,
    OSError,
    struct.error,
    zipfile.BadZipFile,
)


class UnreadableFileError(UserInputError):
    """A file is missing, a folder, empty, of another format, damaged, pickled or too large."""


def _read_header(path: str) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from the header of the ``.npy`` file ``path``; raises ``ValueError`` or ``EOFError``."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        else:  # 2.0 and 3.0 share the layout (3.0 only allows UTF-8 field names, which we refuse anyway)
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    return tuple(int(n) for n in shape), dtype


def load_npy(
    path: str | os.PathLike,
    what: str,
    *,
    fix: str | None = None,
    max_rows: int | None = None,
    max_bytes: int = MAX_NPY_BYTES,
) -> np.ndarray:
    """Load the single array of the ``.npy`` file ``path``.

    Args:
        path: the file.
        what: what the file is, for messages (e.g. ``"camera keyframe file"``).
        fix: what to do about a bad file, appended to messages (default: write it with numpy.save).
        max_rows: refuse arrays with more rows (``shape[0]``) than this, before reading them.
        max_bytes: refuse arrays larger than this, before reading them.

    Raises:
        UnreadableFileError: missing, a folder, empty, not ``.npy`` (e.g. ``.npz`` or a PyTorch file), damaged or truncated,
            holding Python objects, or beyond the limits.
    """
    path = os.fspath(path)
    magic = _read_start(path, what, len(NPY_MAGIC), "a .npy file", fix or "")
    fix = fix or "write it with numpy.save(path, array)"
    if not magic:
        raise UnreadableFileError(f"{path}: not a readable .npy array (the file is empty); {fix}")
    if magic.startswith(ZIP_MAGIC):
        raise UnreadableFileError(
            f"{path}: expected a single .npy array, got a zip file (an .npz archive or a PyTorch file); {fix}"
        )
    if magic != NPY_MAGIC:
        raise UnreadableFileError(f"{path}: not a readable .npy array (no numpy header: another format?); {fix}")
    try:
        shape, dtype = _read_header(path)
    except (ValueError, EOFError, OSError) as err:
        raise UnreadableFileError(
            f"{path}: not a readable .npy array (damaged header: {_first_line(err)}); {fix}"
        ) from None
    if dtype.hasobject:
        raise UnreadableFileError(
            f"{path}: not a readable .npy array (it holds Python objects, which are never unpickled: "
            f"allow_pickle=False); {fix}"
        )
    if max_rows is not None and shape and shape[0] > max_rows:
        raise UnreadableFileError(f"{path}: the {what} has {shape[0]:,} rows; at most {max_rows:,} are allowed")
    size = dtype.itemsize * math.prod(shape)
    if size > max_bytes:
        raise UnreadableFileError(
            f"{path}: the {what} holds {size / 2**20:,.0f} MiB of data; at most {max_bytes / 2**20:,.0f} MiB are allowed"
        )
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError) as err:
        raise UnreadableFileError(f"{path}: not a readable .npy array ({_first_line(err)}); {fix}") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _read_start(path: str, what: str, size: int, expected: str, fix: str = "") -> bytes:
    """The first ``size`` bytes of ``path``, after refusing a missing path or a folder (``fix`` is appended)."""
    suffix = f"; {fix}" if fix else ""
    if not os.path.exists(path):
        raise UnreadableFileError(f"{what} not found: {path}{suffix}")
    if os.path.isdir(path):
        raise UnreadableFileError(f"{what} {path} is a folder; pass {expected}")
    try:
        with open(path, "rb") as f:
            return f.read(size)
    except OSError as err:
        raise UnreadableFileError(f"cannot read the {what} {path}: {err.strerror or err}") from None


def load_torch_file(path: str | os.PathLike, what: str, *, fix: str, noun: str = "readable PyTorch file") -> object:
    """``torch.load(path, weights_only=True)`` on CPU: tensors and plain containers only, no pickled code runs.

    Args:
        path: the file.
        what: what the file is, for messages (e.g. ``"official checkpoint"``).
        fix: what to do about a bad file, appended to messages.
        noun: messages say the file is "not a {noun}".

    Raises:
        UnreadableFileError: missing, a folder, empty, holding pickled objects other than tensors, damaged or of
            another format.
    """
    import torch

    path = os.fspath(path)
    start = _read_start(path, what, len(NPY_MAGIC), "a file", fix)
    if not start:
        raise UnreadableFileError(f"{path}: not a {noun} (the file is empty); {fix}")
    if start == NPY_MAGIC:
        raise UnreadableFileError(f"{path}: not a {noun} (it is a numpy .npy array); {fix}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UnreadableFileError(
            f"{path}: not a {noun}: refused, it holds pickled objects other than tensors (read with "
            f"weights_only=True); {fix}"
        ) from None
    except TORCH_LOAD_ERRORS as err:
        raise UnreadableFileError(
            f"{path}: not a {noun} (damaged or another format: {_first_line(err)}); {fix}"
        ) from None


def output_file_problem(path: str | os.PathLike) -> str | None:
    """Why the file ``path`` could not be written (its folder is missing, a file, or not writable), or None."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(folder):
        return f"output folder does not exist: {folder}; create it first"
    if not os.path.isdir(folder):
        return f"{folder} is a file, not a folder; choose another path"
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        return f"cannot write in {folder}: {err.strerror or err}; choose another folder"
    return None


def output_folder_problem(path: str | os.PathLike) -> str | None:
    """Why the folder ``path`` could not be created or written (it is a file, or its nearest existing ancestor is a
    file or not writable), or None. Creates nothing."""
    path = os.path.abspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        return f"{path} is a file, not a folder; choose another output folder"
    ancestor = path
    while not os.path.exists(ancestor) and os.path.dirname(ancestor) != ancestor:
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        return f"{ancestor} is a file, not a folder; choose another output folder"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"{ancestor} is not writable; choose another output folder"
    return None
