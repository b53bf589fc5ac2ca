"""Control accuracy and identity consistency: metrics beyond the paper (which reports FID/KID only).

Control errors
    :func:`control_errors` renders a generator with given labels (camera, pose, expression, identity), asks a
    pluggable *estimator* to read the labels back from the renders and reports mean absolute errors per label group
    (:func:`label_errors`); :func:`estimate_labels` returns the readings themselves (for signed errors, biases):

    - ``camera_deg``: pitch and yaw (and each alone), degrees;
    - ``head_pose_deg``: joints 12 (neck) and 15 (head), all three Euler angles, degrees;
    - ``shoulder_pose_deg``: joints 13, 14 (collars), 16, 17 (shoulders), degrees;
    - ``expression``: mean absolute coefficient error on ``EXPRESSION_COEFFS`` (0..3), the coefficients the
      synthetic world uses (mouth open, smile, eyes closed, brows).

    An estimator is any callable ``(images [B, 3, H, W], faces [B, 3, F, F]) -> dict`` in [-1, 1] returning some of
    ``camera`` [B, 2], ``pose`` [B, 6, 3], ``expression`` [B, >= 4]; groups it does not return are not reported.
    Angle differences are wrapped to [-pi, pi].

The estimator of models trained on the synthetic dataset
    :mod:`aniportrait.eval.estimator`: a small CNN trained on ``data synth`` images, with its held-out errors (the
    floor) in its weights file. For SHHQ-HS models use a real face/pose tracker (e.g. Deep3DFaceRecon for expression
    and EFT for pose, as the paper's video driving does).

Identity consistency
    :func:`identity_consistency` renders every seed under K controls (poses, expressions, cameras), embeds the
    renders with a feature function (the Inception extractor, or any ``images -> [B, D]`` callable such as a face
    recogniser) and reports the mean cosine similarity of same-identity pairs (same seed, different controls), of
    different-identity pairs (different seeds) and their gap (same - different; larger is better).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from aniportrait.eval.errors import EvalError
from aniportrait.kernels._registry import Impl

__all__ = [
    "EXPRESSION_COEFFS",
    "HEAD_JOINTS",
    "SHOULDER_JOINTS",
    "control_errors",
    "estimate_labels",
    "identity_consistency",
    "label_errors",
]

POSE_JOINTS = (12, 13, 14, 15, 16, 17)  # the rows of a [N, 6, 3] pose label
HEAD_JOINTS = (12, 15)
SHOULDER_JOINTS = (13, 14, 16, 17)
EXPRESSION_COEFFS = (0, 1, 2, 3)

Estimator = Callable[[Tensor, Tensor], dict]


def _rows(joints) -> list[int]:
    return [POSE_JOINTS.index(j) for j in joints]


def _angle_error(a: Tensor, b: Tensor) -> Tensor:
    """|a - b| wrapped to [0, pi], in degrees."""
    d = torch.remainder(a.double() - b.double() + math.pi, 2 * math.pi) - math.pi
    return d.abs() * (180.0 / math.pi)


def label_errors(estimated: dict, true: dict) -> dict[str, float]:
    """Mean absolute errors per label group of estimated vs true labels (see the module docstring)."""
    out: dict[str, float] = {}
    n = None
    if "camera" in estimated:
        err = _angle_error(torch.as_tensor(estimated["camera"]).detach(), torch.as_tensor(true["camera"]))
        out["camera_deg"] = float(err.mean())
        out["camera_pitch_deg"] = float(err[:, 0].mean())
        out["camera_yaw_deg"] = float(err[:, 1].mean())
        n = err.shape[0]
    if "pose" in estimated:
        err = _angle_error(torch.as_tensor(estimated["pose"]).detach(), torch.as_tensor(true["pose"]))
        out["head_pose_deg"] = float(err[:, _rows(HEAD_JOINTS)].mean())
        out["shoulder_pose_deg"] = float(err[:, _rows(SHOULDER_JOINTS)].mean())
        n = err.shape[0]
    if "expression" in estimated:
        idx = list(EXPRESSION_COEFFS)
        e, t = torch.as_tensor(estimated["expression"]).detach().double(), torch.as_tensor(true["expression"]).double()
        out["expression"] = float((e[:, idx] - t[:, idx]).abs().mean())
        n = e.shape[0]
    if n is None:
        raise EvalError("the estimator returned none of camera, pose, expression")
    out["count"] = int(n)
    return out


def _identity_latents(generator, labels: dict, n: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """(z_id, z_noise, betas) of the labels: ``z_id`` (or ``id``), ``betas``, ``z_noise``, or ``seeds``."""
    from aniportrait.models.generator import sample_identity_latents

    cfg = generator.config
    if "seeds" in labels:
        seeds = [int(s) for s in labels["seeds"]]
        if len(seeds) != n:
            raise EvalError(f"labels have {len(seeds)} seeds for {n} cameras")
        return sample_identity_latents(cfg, seeds, id_bank=getattr(generator, "id_bank", None))
    z_id = labels.get("z_id", labels.get("id"))
    if z_id is None:
        raise EvalError("labels need the identity: 'z_id' (or 'id') and 'betas', or 'seeds'")
    betas = labels.get("betas", torch.zeros(n, cfg.betas_dim))
    z_noise = labels.get("z_noise")
    if z_noise is None:
        z_noise = torch.randn(n, cfg.z_noise_dim, generator=torch.Generator().manual_seed(int(seed)))
    return torch.as_tensor(z_id).float(), torch.as_tensor(z_noise).float(), torch.as_tensor(betas).float()


@torch.no_grad()
def _render(generator, body, latents, expression, camera, pose, face_size, stage, impl) -> tuple[Tensor, Tensor]:
    device = next(generator.parameters()).device
    tensors = [t.to(device=device, dtype=torch.float32) for t in (*latents, expression, camera, pose)]
    out = generator.render_train(body, *tensors, face_size=face_size, stage=stage, impl=impl)
    return out["image"].clamp(-1, 1).cpu(), out["face"].clamp(-1, 1).cpu()


def _render_rows(
    generator, body, labels: dict, face_size: int | None, stage: int, batch_size: int, seed: int, impl: Impl
) -> Iterator[tuple[Tensor, Tensor]]:
    """Render ``labels`` (camera, pose, expression and the identity, see :func:`control_errors`) ``batch_size`` rows
    at a time: yields (images, faces) on the CPU, clamped to [-1, 1]."""
    camera = torch.as_tensor(labels["camera"]).float()
    pose = torch.as_tensor(labels["pose"]).float()
    expression = torch.as_tensor(labels["expression"]).float()
    n = camera.shape[0]
    if pose.shape[0] != n or expression.shape[0] != n or n == 0:
        raise EvalError(f"labels disagree on N: camera {n}, pose {pose.shape[0]}, expression {expression.shape[0]}")
    latents = _identity_latents(generator, labels, n, seed)
    face_size = face_size or generator.default_face_size(stage)
    for start in range(0, n, batch_size):
        sl = slice(start, min(start + batch_size, n))
        yield _render(
            generator, body, [t[sl] for t in latents], expression[sl], camera[sl], pose[sl], face_size, stage, impl
        )


@torch.no_grad()
def estimate_labels(
    generator,
    body,
    labels: dict,
    estimator: Estimator,
    face_size: int | None = None,
    stage: int = 1,
    *,
    batch_size: int = 8,
    seed: int = 0,
    impl: Impl = "auto",
) -> dict[str, Tensor]:
    """Render ``labels`` and read them back: the estimator's ``camera`` [N, 2], ``pose`` [N, 6, 3] and
    ``expression`` [N, 64] (arguments as :func:`control_errors`)."""
    estimates: dict[str, list[Tensor]] = {}
    for images, faces in _render_rows(generator, body, labels, face_size, stage, batch_size, seed, impl):
        for key, value in estimator(images, faces).items():
            if key in ("camera", "pose", "expression"):
                estimates.setdefault(key, []).append(torch.as_tensor(value).detach().cpu())
    return {key: torch.cat(parts) for key, parts in estimates.items()}


@torch.no_grad()
def control_errors(
    generator,
    body,
    labels: dict,
    estimator: Estimator,
    face_size: int | None = None,
    stage: int = 1,
    *,
    batch_size: int = 8,
    seed: int = 0,
    impl: Impl = "auto",
) -> dict[str, float]:
    """Render ``labels`` and report the estimator's mean absolute errors per label group.

    Args:
        generator: an :class:`~aniportrait.models.generator.AniPortraitGenerator`; body: its body model.
        labels: ``camera`` [N, 2], ``pose`` [N, 6, 3], ``expression`` [N, 64] and the identity: ``z_id`` (or a
            dataset's ``id``) [N, 80] with ``betas`` [N, 10] (and optionally ``z_noise``; default N(0, I) from
            ``seed``), or ``seeds`` (N ints, :func:`~aniportrait.models.generator.sample_identity_latents`).
        estimator: ``(images, faces) -> dict`` of estimated labels, see the module docstring.
        face_size: face render side (default ``generator.default_face_size(stage)``); stage: 1 (LR) or 2 (HR).
    """
    estimated = estimate_labels(
        generator, body, labels, estimator, face_size, stage, batch_size=batch_size, seed=seed, impl=impl
    )
    truth = {key: torch.as_tensor(labels[key]).float() for key in ("camera", "pose", "expression")}
    return label_errors(estimated, truth)


# ---------------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def identity_consistency(
    generator,
    body,
    seeds: list[int],
    controls: dict,
    features: Callable[[Tensor], Tensor],
    *,
    use: str = "face",
    face_size: int | None = None,
    stage: int = 1,
    id_bank: Tensor | None = None,
    impl: Impl = "auto",
) -> dict[str, float]:
    """Same- vs different-identity cosine similarity of renders under several controls.

    Args:
        seeds: N >= 2 identity seeds (:func:`~aniportrait.models.generator.sample_identity_latents`, optionally
            from ``id_bank``, default: the generator's own).
        controls: K >= 2 controls applied to every seed: ``camera`` [K, 2], ``pose`` [K, 6, 3], ``expression``
            [K, 64].
        features: images [B, 3, H, W] in [-1, 1] -> [B, D] (e.g. a :class:`~aniportrait.eval.inception.FIDInception`).
        use: embed the ``"face"`` renders, the ``"image"`` (portrait) renders, or ``"both"`` (features concatenated).

    Returns:
        ``same_identity`` (mean cosine over pairs of one seed's renders), ``different_identity`` (mean over pairs of
        renders of different seeds), ``gap`` (same - different), ``seeds``, ``controls``.
    """
    from aniportrait.models.generator import sample_identity_latents

    if use not in ("face", "image", "both"):
        raise EvalError(f"use must be 'face', 'image' or 'both', got {use!r}")
    camera = torch.as_tensor(controls["camera"]).float()
    pose = torch.as_tensor(controls["pose"]).float()
    expression = torch.as_tensor(controls["expression"]).float()
    k = camera.shape[0]
    if len(seeds) < 2 or k < 2 or pose.shape[0] != k or expression.shape[0] != k:
        raise EvalError(
            f"need >= 2 seeds and >= 2 controls with matching rows; got {len(seeds)} seeds, controls "
            f"camera {k}, pose {pose.shape[0]}, expression {expression.shape[0]}"
        )
    face_size = face_size or generator.default_face_size(stage)
    id_bank = getattr(generator, "id_bank", None) if id_bank is None else id_bank
    z_id, z_noise, betas = sample_identity_latents(generator.config, list(seeds), id_bank=id_bank)
    embeddings = []
    for i in range(len(seeds)):
        latents = [t[i : i + 1].expand(k, -1) for t in (z_id, z_noise, betas)]
        images, faces = _render(generator, body, latents, expression, camera, pose, face_size, stage, impl)
        parts = []
        if use in ("image", "both"):
            parts.append(torch.as_tensor(features(images)).double().cpu())
        if use in ("face", "both"):
            parts.append(torch.as_tensor(features(faces)).double().cpu())
        embeddings.append(torch.cat([p.flatten(1) for p in parts], dim=1))
    emb = F.normalize(torch.cat(embeddings), dim=1)  # [N K, D], rows grouped by seed
    if not torch.isfinite(emb).all():
        raise EvalError("the feature function returned NaN or inf")
    sim = emb @ emb.T
    owner = torch.arange(len(seeds)).repeat_interleave(k)
    same = owner[:, None] == owner[None, :]
    off_diag = ~torch.eye(len(owner), dtype=torch.bool)
    same_mean = float(sim[same & off_diag].mean())
    diff_mean = float(sim[~same].mean())
    return {
        "same_identity": same_mean,
        "different_identity": diff_mean,
        "gap": same_mean - diff_mean,
        "seeds": len(seeds),
        "controls": k,
    }
