"""Control errors and estimator fidelity of a generator at a training snapshot, in one cheap call.

:func:`snapshot_metrics` renders ``num`` fakes with the labels of ``num`` dataset rows (camera, pose, expression,
identity and betas of the same rows; ``z_noise`` from the seed), reads them back with the synthetic world's learned
estimator (:mod:`aniportrait.eval.estimator`) and compares them with the real images of those rows:

- ``ctl_camera_deg``, ``ctl_head_deg``, ``ctl_shoulder_deg``, ``ctl_expression``: the control errors
  (:func:`aniportrait.eval.control.label_errors`);
- ``fid_est``: the Frechet distance of the fakes' estimator features against the reals', the reals resampled to
  the render sizes' ray grids first (:func:`~aniportrait.images.resample_grid`). Its floor (data vs data at the
  same N) is in the estimator's record (:meth:`~aniportrait.eval.estimator.SyntheticLabelEstimator.floor`).

Every random draw uses local ``torch.Generator`` objects; torch's global RNG state is left as it was.
"""

from __future__ import annotations

import torch

from aniportrait.eval import control
from aniportrait.eval.errors import EvalError
from aniportrait.eval.estimator import builtin_estimator, estimator_features
from aniportrait.eval.metrics import frechet_distance
from aniportrait.images import resample_grid
from aniportrait.kernels._registry import Impl

__all__ = ["snapshot_metrics"]

KEYS = {
    "camera_deg": "ctl_camera_deg",
    "head_pose_deg": "ctl_head_deg",
    "shoulder_pose_deg": "ctl_shoulder_deg",
    "expression": "ctl_expression",
}


@torch.no_grad()
def snapshot_metrics(
    generator,
    body,
    dataset,
    *,
    num: int = 64,
    seed: int = 0,
    stage: int = 1,
    face_size: int | None = None,
    impl: Impl = "auto",
    batch_size: int = 16,
    estimator=None,
) -> dict[str, float]:
    """Control errors and ``fid_est`` of ``num`` renders of ``generator`` against ``dataset`` (module docstring).

    Args:
        generator: an :class:`~aniportrait.models.generator.AniPortraitGenerator`; body: its body model.
        dataset: a :class:`~aniportrait.data.dataset.PortraitDataset` (synthetic data); ``num`` distinct rows are
            drawn with ``seed`` (all rows if it has fewer; at least 2).
        stage: 1 (low-resolution render) or 2 (super-resolved); face_size: default
            ``generator.default_face_size(stage)``.
        estimator: default the packaged :func:`~aniportrait.eval.estimator.builtin_estimator`.

    Returns:
        ``ctl_camera_deg``, ``ctl_head_deg``, ``ctl_shoulder_deg``, ``ctl_expression``, ``fid_est`` (floats).
    """
    n = min(int(num), len(dataset))
    if n < 2:
        raise EvalError(f"snapshot metrics need at least 2 images, got num={num} with {len(dataset)} dataset rows")
    estimator = builtin_estimator() if estimator is None else estimator
    g = torch.Generator().manual_seed(int(seed))
    rows = torch.randperm(len(dataset), generator=g)[:n].tolist()
    labels = dataset.rows(rows, ("camera", "pose", "expression", "id", "betas", "image", "face"))
    data_images, data_faces = labels.pop("image"), labels.pop("face")
    labels["z_noise"] = torch.randn(n, generator.config.z_noise_dim, generator=g)
    images, faces = zip(*control._render_rows(generator, body, labels, face_size, stage, batch_size, seed, impl))
    images, faces = torch.cat(images), torch.cat(faces)
    device = next(estimator.parameters()).device
    estimated: dict[str, list] = {}
    for start in range(0, n, batch_size):
        sl = slice(start, start + batch_size)
        for key, value in estimator(images[sl].to(device), faces[sl].to(device)).items():
            estimated.setdefault(key, []).append(value.cpu())
    errors = control.label_errors({k: torch.cat(v) for k, v in estimated.items()}, labels)
    out = {KEYS[k]: float(errors[k]) for k in KEYS}
    real_images = resample_grid(data_images, images.shape[-1], antialias=True)
    real_faces = resample_grid(data_faces, faces.shape[-1], antialias=True)
    out["fid_est"] = frechet_distance(
        estimator_features(estimator, images, faces), estimator_features(estimator, real_images, real_faces)
    )
    return out
