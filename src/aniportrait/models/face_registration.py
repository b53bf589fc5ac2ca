"""Placing a 3DMM in the generator's canonical space: a similarity (Umeyama) from the 3DMM's 68 landmarks to the
same landmarks on the body's head (SMPL barycentrics, or the procedural rig's), per identity."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from aniportrait.constants import SMPL_NUM_FACES, SMPL_PARENTS
from aniportrait.models.body import BodyModel, to_face_frame
from aniportrait.models.face3dmm import (
    HEAD_JOINT,
    NECK_JOINT,
    NUM_LANDMARKS,
    Face3DMM,
    FaceModelError,
    _as_float64,
)
from aniportrait.models.face_procedural import FACE_TEMPLATE_MM, TEMPLATE_HALF_WIDTH_MM, TEMPLATE_NOSE_TIP

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
    landmarks = landmarks_on_mesh(canonical_body_vertices(body, betas), faces, bary)
    return landmarks[0] if unbatched else landmarks


def landmarks_on_mesh(vertices: Tensor, faces: Tensor, bary: Tensor) -> Tensor:
    """Points [B, L, 3] on meshes [B, V, 3] with triangles ``faces`` [F, 3], from barycentric rows ``bary`` [L, 4]
    (triangle index, then the three weights)."""
    corners = vertices[:, faces[bary[:, 0].long()]]  # [B, L, 3 corners, 3]
    return (bary[None, :, 1:, None].to(vertices.dtype) * corners).sum(2)


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
