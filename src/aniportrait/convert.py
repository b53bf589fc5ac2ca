"""Conversion of the authors' ``sshq512.pt`` into our safetensors checkpoint.

The release's file is a plain state_dict of ``ManifoldSRGenerator3d`` with 244 keys (as read from the file when this
port was written; the file is not in this repository, and tests/test_convert.py rebuilds its layout):

- 234 network parameters whose names are ours unchanged (``radiance_net.``, ``sample_net.``, ``deform_net.``,
  ``sr_net.``, ``smoother.``);
- ``renderer.smooth_layer.conv_block{1,2}.weight``: the same smoother registered a second time; they must equal
  ``smoother.*`` and are dropped;
- ``renderer.smpl_model.*``: the 8 buffers of smplx's SMPLLayer, i.e. the SMPL neutral model itself. SMPL's licence
  applies to them, so they are checked and dropped; ``smpl_out`` optionally writes them, for the user's own use, as
  an SMPL-layout ``.npz`` that ``--smpl`` accepts.

The file is read with ``torch.load(weights_only=True)``: no pickled code runs.

The release draws each identity's ``[z_id, betas]`` jointly from a bank of training labels,
``sampler_npy/id_shape_sampler_body.npy`` ([N, 90]: 80 3DMM identity coefficients, then 10 SMPL betas), and takes
its truncation averages from the same bank. ``id_bank`` stores that bank in the converted checkpoint (as our own
checkpoints store theirs), so seeds and ``psi`` mean what they mean in the release; without it identities come from
N(0, I) with betas 0.

The release's semantics and the quirks kept for parity: docs/release.md.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from aniportrait.checkpoint import FORMAT, ID_BANK_KEY, VALID_INDEX_KEY, VERSION, CheckpointError, atomic_save
from aniportrait.config import SSHQ512
from aniportrait.constants import SMPL_NUM_FACES, SMPL_NUM_VERTS
from aniportrait.models.generator import AniPortraitGenerator
from aniportrait.userfiles import UnreadableFileError, load_npy, load_torch_file

DUPLICATE_SMOOTHER = {
    "renderer.smooth_layer.conv_block1.weight": "smoother.conv_block1.weight",
    "renderer.smooth_layer.conv_block2.weight": "smoother.conv_block2.weight",
}
SMPL_PREFIX = "renderer.smpl_model."
# The SMPLLayer buffers embedded in the release's checkpoint, with their shapes.
SMPL_BUFFERS = {
    "shapedirs": (SMPL_NUM_VERTS, 3, 10),
    "faces_tensor": (SMPL_NUM_FACES, 3),
    "v_template": (SMPL_NUM_VERTS, 3),
    "J_regressor": (24, SMPL_NUM_VERTS),
    "posedirs": (207, SMPL_NUM_VERTS * 3),
    "parents": (24,),
    "lbs_weights": (SMPL_NUM_VERTS, 24),
    "vertex_joint_selector.extra_joints_idxs": (21,),
}


def load_official_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read the release's checkpoint safely (``weights_only=True``); accept a bare state_dict or one under a key."""
    path = os.fspath(path)
    try:
        data = load_torch_file(
            path, "official checkpoint", noun="readable PyTorch checkpoint", fix="pass the release's sshq512.pt"
        )
    except UnreadableFileError as err:
        raise CheckpointError(str(err)) from None
    for key in ("state_dict", "generator_ema", "generator"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path}: expected a state_dict of tensors")
    return data


def load_knn_index(path: str | os.PathLike, num_verts: int = SMPL_NUM_VERTS) -> torch.Tensor:
    """The release's ``valid_smpl_knn_index.npy``: sorted unique vertex ids in [0, num_verts)."""
    path = os.fspath(path)
    try:
        index = load_npy(
            path, "knn index file", fix="pass the release's smpl_models/valid_smpl_knn_index.npy", max_rows=num_verts
        )
    except UnreadableFileError as err:
        raise CheckpointError(str(err)) from None
    if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer) or index.size == 0:
        raise CheckpointError(
            f"{path}: expected a 1-D integer array of vertex ids, got {index.dtype} {list(index.shape)}"
        )
    if index.min() < 0 or index.max() >= num_verts or np.any(np.diff(index) <= 0):
        raise CheckpointError(f"{path}: vertex ids must be sorted, unique and within [0, {num_verts})")
    return torch.from_numpy(index.astype(np.int64))


# Rows of an identity bank we accept (the release's is its training set's label count): 4 M rows are 1.4 GiB.
MAX_ID_BANK_ROWS = 4_000_000


def load_id_bank(path: str | os.PathLike, width: int = SSHQ512.z_id_dim + SSHQ512.betas_dim) -> torch.Tensor:
    """The release's ``id_shape_sampler_body.npy``: a finite float [N, 90] bank of ``[z_id, betas]`` rows, as float32."""
    path = os.fspath(path)
    fix = "pass the release's sampler_npy/id_shape_sampler_body.npy"
    try:
        bank = load_npy(path, "identity bank", fix=fix, max_rows=MAX_ID_BANK_ROWS)
    except UnreadableFileError as err:
        raise CheckpointError(str(err)) from None
    if bank.ndim != 2 or bank.shape[0] == 0 or bank.shape[1] != width or not np.issubdtype(bank.dtype, np.floating):
        raise CheckpointError(
            f"{path}: expected a float [N, {width}] identity bank (80 identity coefficients and 10 SMPL betas per "
            f"row), got {bank.dtype} {list(bank.shape)}; {fix}"
        )
    with np.errstate(over="ignore"):  # values beyond float32 become inf and are refused below
        bank = bank.astype(np.float32)
    if not np.isfinite(bank).all():
        bad = int((~np.isfinite(bank).all(axis=1)).sum())
        raise CheckpointError(f"{path}: {bad} rows of the identity bank hold NaN or infinity (or overflow float32)")
    return torch.from_numpy(bank)


def smpl_arrays_from_buffers(buffers: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """SMPLLayer buffers -> the SMPL model file's keys and layout (what ``--smpl`` reads)."""
    posedirs = buffers["posedirs"].numpy().reshape(-1, SMPL_NUM_VERTS, 3).transpose(1, 2, 0)  # [6890, 3, 207]
    parents = buffers["parents"].numpy().astype(np.int64)
    return {
        "v_template": buffers["v_template"].numpy(),
        "shapedirs": buffers["shapedirs"].numpy(),
        "posedirs": np.ascontiguousarray(posedirs),
        "J_regressor": buffers["J_regressor"].numpy(),
        "weights": buffers["lbs_weights"].numpy(),
        "kintree_table": np.stack([parents, np.arange(len(parents))]),
        "f": buffers["faces_tensor"].numpy().astype(np.int64),
    }


def convert_official(
    checkpoint: str | os.PathLike,
    knn_index: str | os.PathLike,
    out: str | os.PathLike,
    *,
    smpl_out: str | os.PathLike | None = None,
    id_bank: str | os.PathLike | None = None,
) -> dict[str, int]:
    """Convert the release's ``sshq512.pt`` to our safetensors format; returns counts of what was mapped.

    Args:
        id_bank: the release's ``id_shape_sampler_body.npy``, stored in the checkpoint (see the module docstring).

    Raises:
        CheckpointError: missing, unexpected or mis-shaped keys, a duplicated smoother that differs, or a bad
            identity bank.
    """
    state = load_official_state_dict(checkpoint)
    index = load_knn_index(knn_index)
    bank = None if id_bank is None else load_id_bank(id_bank)
    generator = AniPortraitGenerator(SSHQ512)
    expected = generator.state_dict()
    smpl = {k[len(SMPL_PREFIX) :]: v for k, v in state.items() if k.startswith(SMPL_PREFIX)}
    network = {k: v for k, v in state.items() if not k.startswith(SMPL_PREFIX) and k not in DUPLICATE_SMOOTHER}

    missing = (
        sorted(set(expected) - set(network))
        + sorted(k for k in DUPLICATE_SMOOTHER if k not in state)
        + sorted(SMPL_PREFIX + k for k in SMPL_BUFFERS if k not in smpl)
    )
    unexpected = sorted(set(network) - set(expected)) + sorted(SMPL_PREFIX + k for k in smpl if k not in SMPL_BUFFERS)
    if missing or unexpected:
        parts = [
            f"missing {', '.join(missing[:4])}" if missing else "",
            f"unexpected {', '.join(unexpected[:4])}" if unexpected else "",
        ]
        raise CheckpointError(f"{checkpoint}: not the release's SSHQ512 generator ({'; '.join(p for p in parts if p)})")
    shapes = {k: tuple(v.shape) for k, v in expected.items()}
    shapes.update({SMPL_PREFIX + k: s for k, s in SMPL_BUFFERS.items()})
    shapes.update({k: shapes[v] for k, v in DUPLICATE_SMOOTHER.items()})
    for key, tensor in state.items():
        if tuple(tensor.shape) != shapes[key]:
            raise CheckpointError(f"{checkpoint}: {key} has shape {list(tensor.shape)}, expected {list(shapes[key])}")
    for duplicate, original in DUPLICATE_SMOOTHER.items():
        if not torch.equal(state[duplicate], state[original]):
            raise CheckpointError(f"{checkpoint}: {duplicate} differs from {original}; they must be one module")

    generator.load_state_dict({k: v.float() for k, v in network.items()})
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "config": generator.config.to_json(),
        "body": "smpl",
        "face_model": "bfm",
        "note": f"converted from {os.path.basename(os.fspath(checkpoint))}",
    }
    tensors = {**generator.state_dict(), VALID_INDEX_KEY: index}
    if bank is not None:
        tensors[ID_BANK_KEY] = bank
    atomic_save(tensors, out, metadata)
    if smpl_out is not None:
        tmp = os.fspath(smpl_out) + ".tmp.npz"
        try:
            np.savez(tmp, **smpl_arrays_from_buffers(smpl))
            os.replace(tmp, smpl_out)
        except BaseException:
            for leftover in (tmp, out):
                if os.path.exists(leftover):
                    os.remove(leftover)
            raise
    return {
        "network": len(network),
        "duplicates": len(DUPLICATE_SMOOTHER),
        "smpl_buffers": len(smpl),
        "id_bank_rows": 0 if bank is None else len(bank),
    }
