"""FID and KID on feature sets, feature extraction, and the generated-image stream of the paper's protocol.

The paper (section 4) reports FID and KID x 100 on full portraits and on the face region: 20K generated vs 20K real
(face 256^2, full 512^2) in the main table and 5K vs 5K at 128^2 in the ablations, with 2048-d Inception-v3 pool
features (:mod:`aniportrait.eval.inception`).

- :func:`frechet_distance`: ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` in float64; the matrix square
  root is ``scipy.linalg.sqrtm``; if it is not finite (singular product), both covariances get ``eps * I`` added
  first (the standard fallback); imaginary parts from round-off are discarded when the diagonal's are below
  ``IMAG_TOLERANCE``, otherwise it raises.
- :func:`kernel_inception_distance`: unbiased MMD^2 with the polynomial kernel ``k(x, y) = (x.y / d + 1)^3``,
  averaged over ``subsets`` random subsets of ``subset_size`` rows of each set (without replacement within a subset,
  ``numpy.random.default_rng(seed)``); mean and std, and both x 100 as the paper reports.
- :func:`extract_features`: batches images through an extractor, [N, D] float64.
- :func:`generated_batches`: renders portraits and faces with labels drawn from a dataset's :class:`LabelBank`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

from aniportrait.eval.errors import EvalError
from aniportrait.kernels._registry import Impl

__all__ = [
    "IMAG_TOLERANCE",
    "extract_features",
    "feature_statistics",
    "fid_kid",
    "frechet_distance",
    "frechet_distance_from_stats",
    "generated_batches",
    "kernel_inception_distance",
]

SQRTM_EPS = 1e-6  # added to the covariance diagonals when sqrtm of the product is not finite
IMAG_TOLERANCE = 1e-3  # largest |imag| on the diagonal of sqrtm(S_a S_b) that is treated as round-off


def _features(feats, name: str) -> np.ndarray:
    if isinstance(feats, Tensor):
        feats = feats.detach().cpu().double().numpy()
    arr = np.asarray(feats, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 2 or arr.shape[1] < 1:
        raise EvalError(f"{name} must be [N, D] features with N >= 2, got shape {list(arr.shape)}")
    if not np.isfinite(arr).all():
        raise EvalError(f"{name} contains NaN or inf")
    return arr


def feature_statistics(feats) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and covariance [D, D] (unbiased, float64) of features [N, D]; what FID needs of one set."""
    arr = _features(feats, "features")
    return arr.mean(axis=0), np.cov(arr, rowvar=False).reshape(arr.shape[1], arr.shape[1])


def frechet_distance_from_stats(mu_a, sigma_a, mu_b, sigma_b, eps: float = SQRTM_EPS) -> float:
    """Frechet distance between the Gaussians N(mu_a, sigma_a) and N(mu_b, sigma_b) (see the module docstring)."""
    mu_a, mu_b = np.atleast_1d(np.asarray(mu_a, np.float64)), np.atleast_1d(np.asarray(mu_b, np.float64))
    sigma_a, sigma_b = np.atleast_2d(np.asarray(sigma_a, np.float64)), np.atleast_2d(np.asarray(sigma_b, np.float64))
    if mu_a.shape != mu_b.shape or sigma_a.shape != sigma_b.shape or sigma_a.shape != (len(mu_a), len(mu_a)):
        raise EvalError(
            f"feature statistics do not match: means {list(mu_a.shape)} / {list(mu_b.shape)}, "
            f"covariances {list(sigma_a.shape)} / {list(sigma_b.shape)}"
        )
    diff = mu_a - mu_b
    covmean = scipy.linalg.sqrtm(sigma_a @ sigma_b)
    if not np.isfinite(covmean).all():
        offset = np.eye(len(mu_a)) * eps
        covmean = scipy.linalg.sqrtm((sigma_a + offset) @ (sigma_b + offset))
    if np.iscomplexobj(covmean):
        largest = np.abs(np.diagonal(covmean).imag).max()
        if largest > IMAG_TOLERANCE:
            raise EvalError(
                f"sqrtm of the covariance product has a large imaginary part ({largest:.3g}); too few samples?"
            )
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * np.trace(covmean))


def frechet_distance(feats_a, feats_b, eps: float = SQRTM_EPS) -> float:
    """FID of two feature sets [N_a, D], [N_b, D] (numpy or torch), computed in float64."""
    a, b = _features(feats_a, "feats_a"), _features(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise EvalError(f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}")
    return frechet_distance_from_stats(*feature_statistics(a), *feature_statistics(b), eps=eps)


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def kernel_inception_distance(
    feats_a, feats_b, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> dict[str, float]:
    """KID: unbiased MMD^2 (cubic polynomial kernel) averaged over random subsets.

    ``subset_size`` is capped at the smaller set's size. Returns ``kid``, ``kid_std`` (std over the subsets) and the
    paper's ``kid_x100``, ``kid_std_x100``, plus ``subsets`` and ``subset_size`` actually used.
    """
    a, b = _features(feats_a, "feats_a"), _features(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise EvalError(f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}")
    if subsets < 1 or subset_size < 2:
        raise EvalError(f"need subsets >= 1 and subset_size >= 2, got {subsets} and {subset_size}")
    m = min(subset_size, len(a), len(b))
    rng = np.random.default_rng(seed)
    values = np.empty(subsets)
    for i in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        k_xx, k_yy, k_xy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
        same = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        values[i] = same - 2.0 * k_xy.mean()
    mean, std = float(values.mean()), float(values.std())
    return {
        "kid": mean,
        "kid_std": std,
        "kid_x100": 100.0 * mean,
        "kid_std_x100": 100.0 * std,
        "subsets": int(subsets),
        "subset_size": int(m),
    }


def fid_kid(feats_a, feats_b, *, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> dict[str, float]:
    """Both metrics as the paper reports them: ``fid``, ``kid_x100``, ``kid_std_x100`` (and the raw KID)."""
    out = {"fid": frechet_distance(feats_a, feats_b)}
    out.update(kernel_inception_distance(feats_a, feats_b, subsets=subsets, subset_size=subset_size, seed=seed))
    return out


def _as_batch(item, key: str | None) -> Tensor:
    if isinstance(item, dict):
        if key is None or key not in item:
            raise EvalError(f"image items are dicts; pass key= one of {sorted(item)} (got {key!r})")
        item = item[key]
    if isinstance(item, np.ndarray):
        item = torch.from_numpy(item)
    if not isinstance(item, Tensor):
        raise EvalError(f"images must be tensors [B, 3, H, W] or [3, H, W] in [-1, 1], got {type(item).__name__}")
    if item.ndim == 3:
        item = item[None]
    if item.ndim != 4 or item.shape[1] != 3:
        raise EvalError(f"images must be [B, 3, H, W] or [3, H, W], got shape {list(item.shape)}")
    return item


@torch.no_grad()
def extract_features(
    extractor: Callable[[Tensor], Tensor],
    images: Tensor | Iterable,
    batch_size: int = 50,
    *,
    key: str | None = None,
    device: str | torch.device | None = None,
    limit: int | None = None,
) -> np.ndarray:
    """Features [N, D] float64 of images in [-1, 1].

    Args:
        extractor: images [B, 3, H, W] -> [B, D] (e.g. :class:`~aniportrait.eval.inception.FIDInception`).
        images: a tensor [N, 3, H, W], or an iterable of tensors [B, 3, H, W] / [3, H, W] or of dicts (then ``key``
            picks the image, e.g. ``"image"`` or ``"face"`` of :class:`~aniportrait.data.dataset.PortraitDataset`
            items or :func:`generated_batches`).
        batch_size: images per extractor call (re-batched from whatever the iterable yields).
        device: where the extractor runs (default: the device of its parameters, else CPU).
        limit: stop after this many images.
    """
    if batch_size < 1:
        raise EvalError(f"batch_size must be positive, got {batch_size}")
    if device is None:
        params = list(extractor.parameters()) if isinstance(extractor, torch.nn.Module) else []
        device = params[0].device if params else torch.device("cpu")
    if isinstance(extractor, torch.nn.Module):
        extractor.eval()
    source = images.split(batch_size) if isinstance(images, Tensor) else images
    pending: list[Tensor] = []
    count, out = 0, []

    def flush(parts: list[Tensor]) -> None:
        batch = torch.cat(parts).to(device=device, dtype=torch.float32)
        feats = extractor(batch)
        if feats.ndim != 2 or feats.shape[0] != batch.shape[0]:
            raise EvalError(f"extractor returned shape {list(feats.shape)} for {batch.shape[0]} images; want [B, D]")
        out.append(feats.detach().cpu().double().numpy())

    for item in source:
        batch = _as_batch(item, key)
        if limit is not None:
            batch = batch[: max(0, limit - count)]
        count += batch.shape[0]
        pending.append(batch)
        while sum(p.shape[0] for p in pending) >= batch_size:
            merged = torch.cat(pending)
            flush([merged[:batch_size]])
            pending = [merged[batch_size:]] if merged.shape[0] > batch_size else []
        if limit is not None and count >= limit:
            break
    if pending and sum(p.shape[0] for p in pending):
        flush(pending)
    if not out:
        raise EvalError("no images to extract features from")
    return np.concatenate(out)


@torch.no_grad()
def generated_batches(
    generator,
    body,
    bank,
    n: int,
    *,
    batch_size: int = 8,
    seed: int = 0,
    stage: int = 2,
    face_size: int | None = None,
    pose_mode: str = "paired",
    impl: Impl = "auto",
) -> Iterator[dict[str, Tensor]]:
    """Yield ``n`` generated samples in batches, ``{"image", "face"}`` in [-1, 1] on the CPU.

    Labels are drawn like training draws them (:mod:`aniportrait.data.samplers` on ``bank``, a
    :class:`~aniportrait.data.samplers.LabelBank`): camera and pose (``pose_mode``), identity + betas, expression;
    ``z_noise`` ~ N(0, I). All draws use one ``torch.Generator`` seeded with ``seed`` on the CPU.
    """
    from aniportrait.data.samplers import sample_camera_pose, sample_expression, sample_identity

    if n < 1 or batch_size < 1:
        raise EvalError(f"n and batch_size must be positive, got {n} and {batch_size}")
    g = torch.Generator().manual_seed(int(seed))
    device = next(generator.parameters()).device
    face_size = face_size or generator.default_face_size(stage)
    bank = bank.to("cpu")
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        camera, pose = sample_camera_pose(bank, b, g, mode=pose_mode)
        z_id, betas = sample_identity(bank, b, g)
        expression = sample_expression(bank, b, g)
        z_noise = torch.randn(b, generator.config.z_noise_dim, generator=g)
        out = generator.render_train(
            body,
            *(t.to(device) for t in (z_id, z_noise, betas, expression, camera, pose)),
            face_size=face_size,
            stage=stage,
            impl=impl,
        )
        yield {"image": out["image"].clamp(-1, 1).cpu(), "face": out["face"].clamp(-1, 1).cpu()}
