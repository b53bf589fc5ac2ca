"""The body model for the pose deformation: SMPL (or the procedural rig) posed, and its inverse skinning.

The release drives the head and shoulders with SMPL (``smplx.build_layer(model_type="smpl")``): six joints get ZYX
Euler angles on top of a canonical "mean pose", SMPL is evaluated twice (posed and canonical), both meshes are
moved to the normalised face frame

    n(v) = ((v - J12) / SMPL_SCALE - (0, FACE_TY, FACE_TZ)) / FACE_RADIUS,

and every vertex gets the inverse of its blended rigid transform ``M_v = sum_j W_vj A_j``. The renderer looks these
up by nearest posed vertex (``aniportrait.ops.inverse_lbs``) to send ray samples back to canonical space.

SMPL itself is never shipped: :mod:`aniportrait.models.smpl_file` reads a user's file, and
:mod:`aniportrait.models.rig` builds a stand-in in SMPL's exact array layout.

Shape letters: ``B`` batch, ``V`` = 6890 SMPL vertices, ``Vv`` valid vertices (3595 for SMPL), ``J`` = 24 joints.
Frames: "SMPL metres" (y up, z forward, x to the figure's left) and canonical units (the face frame above).

Reference: YueWuHKUST/AniPortraitGAN ``generators/renderer.py`` (``run_model_lbs``, ``init_smpl``) and
``generators/utils.py`` (``convert_eulers_to_pose``), its checkpoint's ``renderer.smpl_model.*`` buffers and
``smpl_models/valid_smpl_knn_index.npy``.
"""

from __future__ import annotations

import contextlib
import io
import os
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
    SMPL_NUM_VERTS,
    SMPL_SCALE,
)
from aniportrait.geometry import euler_zyx_to_matrix
from aniportrait.models.rig import procedural_rig, rig_valid_index
from aniportrait.models.smpl_file import (
    NECK_JOINT,
    NUM_BETAS,
    NUM_JOINTS,
    BodyModelError,
    _check_arrays,
    load_smpl_arrays,
)

__all__ = ["BodyModel", "to_face_frame"]


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
        self._correctives: tuple[tuple, bool] | None = None  # (posedirs' identity and version, any non-zero)

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

    @property
    def pose_correctives(self) -> bool:
        """Whether the model has pose correctives. The procedural rig has none, and skipping their [B, 207] x
        [207, 3V] product (a zero) is a large part of a small model's frame. Re-checked when ``posedirs`` is replaced
        or written in place (``load_state_dict``)."""
        posedirs = self.smpl_model.posedirs
        key = (posedirs.data_ptr(), posedirs._version, posedirs.device)
        if self._correctives is None or self._correctives[0] != key:
            self._correctives = (key, bool(posedirs.abs().max() > 0))
        return self._correctives[1]

    def _smpl(self, betas: Tensor, rotations: Tensor, *, skin: int | None = None) -> tuple[Tensor | None, Tensor]:
        """SMPL's forward (``smplx.lbs.lbs``, by smplx's own blend-shape, joint and kinematic-chain functions) ->
        vertices [S, V, 3] of the first ``skin`` rows (all B by default; None for 0: joints need no skinning) and
        joints [B, 24, 3], in canonical units. Pose correctives are added where the model has any."""
        m = self.smpl_model
        shaped = m.v_template + smplx.lbs.blend_shapes(betas, m.shapedirs)
        rest_joints = smplx.lbs.vertices2joints(m.J_regressor, shaped)
        joints, chain = smplx.lbs.batch_rigid_transform(rotations, rest_joints, m.parents, dtype=rotations.dtype)
        neck = joints[:, NECK_JOINT]
        batch = len(betas) if skin is None else skin
        if batch == 0:
            return None, to_face_frame(joints, neck)
        shaped, rotations, chain = shaped[:batch], rotations[:batch], chain[:batch]
        if self.pose_correctives:
            eye = torch.eye(3, dtype=rotations.dtype, device=rotations.device)
            shaped = shaped + ((rotations[:, 1:] - eye).reshape(batch, -1) @ m.posedirs).view(batch, -1, 3)
        blended = (m.lbs_weights @ chain.reshape(batch, NUM_JOINTS, 16)).view(batch, -1, 4, 4)
        posed = (blended @ torch.cat([shaped, torch.ones_like(shaped[..., :1])], dim=-1)[..., None])[..., :3, 0]
        return to_face_frame(posed, neck[:batch]), to_face_frame(joints, neck)

    def joints(self, betas: Tensor, pose: Tensor) -> Tensor:
        """Posed SMPL joints in canonical units.

        Args:
            betas: [B, 10] shape coefficients.
            pose: [B, 6, 3] ZYX Euler angles of joints 12..17 relative to the mean pose.

        Returns:
            [B, 24, 3] joints; J12 is always at (0, -FACE_TY, -FACE_TZ) / FACE_RADIUS.
        """
        betas, rotations = self._pose_rotations(betas, pose)
        return self._smpl(betas, rotations @ self.mean_pose, skin=0)[1]

    def canonical_mesh(self, betas: Tensor) -> tuple[Tensor, Tensor]:
        """The whole mesh and its joints at the canonical mean pose, in canonical units.

        Args:
            betas: [B, 10] shape coefficients (zeros: the mean shape, where ``mean_shape`` canonical space lies).

        Returns:
            vertices [B, V, 3] (all of them, not only the valid ones) and joints [B, 24, 3], in the model dtype.
        """
        betas, _ = self._pose_rotations(betas, betas.new_zeros(len(betas), len(POSE_JOINTS), 3))
        return self._smpl(betas, self.mean_pose.expand(len(betas), -1, -1, -1))

    def inverse_skinning(self, betas: Tensor, pose: Tensor, *, mean_shape: bool = False) -> tuple[Tensor, Tensor]:
        """Posed valid vertices and their inverse skinning transforms in canonical units (the release's inverse LBS).

        The given rotations R(E) of joints 12..17 act on top of the mean pose (absolute pose R(E) @ A); SMPL runs
        posed and canonical, both meshes move to the face frame, and each vertex gets the inverse of
        ``M_v = sum_j W_vj A_j``, with A_j the chain transforms of R(E) about the canonical joints. Zero pose gives
        identity transforms.

        Args:
            betas: [B, 10] SMPL shape coefficients.
            pose: [B, 6, 3] ZYX Euler angles (about Z, Y, X) of joints 12 neck, 13/14 collars, 15 head,
                16/17 shoulders, relative to the canonical mean pose.
            mean_shape: False (the release): canonical space is the mean pose at the identity's shape. True: it is
                the mean pose at the mean shape (betas 0); each transform then also takes away its vertex's shape
                offset (canonical vertex at ``betas`` minus at 0), so one canonical point is the same spot of the
                body, an eye or a lip corner, for every identity.

        Returns:
            verts [B, Vv, 3]: posed valid vertices; vert_transforms [B, Vv, 4, 4]: ``M_v^-1``, mapping a posed point
            near vertex v to canonical space. Model dtype, differentiable w.r.t. betas and pose.

        Example:
            >>> verts, vert_transforms = body.inverse_skinning(betas, pose)
            >>> canonical, _ = aniportrait.ops.inverse_lbs(points, verts, vert_transforms)
        """
        betas, rotations = self._pose_rotations(betas, pose)
        batch = len(betas)
        # One batched SMPL call: the first B rows posed (R(E) @ A) and skinned, the next B canonical (A), skinned only
        # for the mean-shape space, which also needs the canonical mesh at betas 0 (the last row).
        rows = [rotations @ self.mean_pose, self.mean_pose.expand_as(rotations)]
        shapes = [betas, betas]
        if mean_shape:
            rows.append(self.mean_pose[None])
            shapes.append(betas.new_zeros(1, NUM_BETAS))
        verts, joints = self._smpl(torch.cat(shapes), torch.cat(rows), skin=2 * batch + 1 if mean_shape else batch)
        canonical_joints = joints[batch : 2 * batch]
        # Chain transforms A_i = [R^G_i | t^G_i - R^G_i J_i] of the given rotations about the canonical joints (the
        # mean pose is already part of those), by smplx's own kinematic chain.
        parents = self.smpl_model.parents
        _, transforms = smplx.lbs.batch_rigid_transform(rotations, canonical_joints, parents, dtype=rotations.dtype)
        weights = self.smpl_model.lbs_weights[self.valid_index]  # [Vv, 24]
        blended = torch.einsum("vj,bjk->bvk", weights, transforms.flatten(2)).unflatten(-1, (4, 4))
        vert_transforms = torch.linalg.inv(blended)
        if mean_shape:
            # Translate by minus the vertex's shape offset: only the transforms' translation column changes.
            offset = (verts[batch : 2 * batch] - verts[2 * batch :])[:, self.valid_index]  # [B, Vv, 3]
            vert_transforms = vert_transforms.clone()
            vert_transforms[..., :3, 3] -= offset
        return verts[:batch, self.valid_index], vert_transforms


def _shape_of(value: Any) -> Any:
    return list(value.shape) if isinstance(value, Tensor) else type(value).__name__
