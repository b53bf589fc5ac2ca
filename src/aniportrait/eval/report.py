"""``aniportrait eval``: every metric for one checkpoint against one dataset, as a JSON report and a table.

- ``fid`` / ``kid``: FID and KID x 100 of generated vs real portraits and faces (paper Table 1), on Inception-v3 pool
  features (:func:`aniportrait.eval.inception.load_fid_inception`, a user-supplied weights file).
- ``control``: render with dataset labels, read camera, pose and expression back with the synthetic world's learned
  estimator (:mod:`aniportrait.eval.estimator`), and report the mean errors, next to the estimator's own held-out
  errors at the closest training resolution (``control_floor_*``, the floor).
- ``fidelity``: the Frechet distance between generated and real (portrait, face) pairs in the estimator's feature
  space (no Inception weights needed), next to its floor ``fidelity_floor``: the same distance between these reals
  and the next ``num`` reals of the dataset (when it has ``2 num`` rows).
- ``identity``: same- vs different-identity similarity of Inception face features across poses and expressions.

``control`` and ``fidelity`` need a dataset made by ``aniportrait data synth`` (the estimator reads only that world);
for other datasets they are skipped and the report says so under ``skipped``.

Generated images come from the full inference path (stage 2: super-resolved textures); real images are resized to
the generated sizes, as training does.
"""

from __future__ import annotations

import json

import torch

from aniportrait.data.dataset import PortraitDataset
from aniportrait.data.samplers import LabelBank, sample_camera_pose, sample_expression
from aniportrait.eval import control, metrics
from aniportrait.eval.errors import EvalError
from aniportrait.eval.estimator import builtin_estimator, estimator_features, is_synthetic_dataset
from aniportrait.images import resample_grid
from aniportrait.kernels._registry import Impl

METRICS = ("fid", "kid", "control", "identity", "fidelity")
ESTIMATOR_METRICS = ("control", "fidelity")  # read by the synthetic world's estimator


def _real_batches(dataset: PortraitDataset, n: int, batch_size: int, image_size: int, face_size: int, start: int = 0):
    """Rows ``start .. start + n`` of the dataset, resampled to the generated sizes' ray grids, in batches."""
    for first in range(start, start + n, batch_size):
        items = [dataset[i] for i in range(first, min(first + batch_size, start + n))]
        yield {
            "image": resample_grid(torch.stack([it["image"] for it in items]), image_size, antialias=True),
            "face": resample_grid(torch.stack([it["face"] for it in items]), face_size, antialias=True),
        }


def control_labels(bank: LabelBank, n: int, g: torch.Generator) -> dict:
    """The ``control`` metric's ``n`` label rows: camera and pose drawn from the dataset's label bank with ``g``, then
    expressions, and the identities of seeds ``0 .. n - 1``."""
    camera, pose = sample_camera_pose(bank, n, g)
    return {"camera": camera, "pose": pose, "expression": sample_expression(bank, n, g), "seeds": list(range(n))}


def _estimator_features(estimator, batches) -> torch.Tensor:
    images = torch.cat([b["image"] for b in batches])
    faces = torch.cat([b["face"] for b in batches])
    return estimator_features(estimator, images, faces)


def evaluate(
    generator,
    body,
    data_dir: str,
    *,
    metrics_wanted: tuple[str, ...] = METRICS,
    inception=None,
    num: int = 1000,
    batch_size: int = 8,
    seed: int = 0,
    identity_seeds: int = 8,
    identity_controls: int = 4,
    impl: Impl = "auto",
    estimator=None,
) -> dict:
    """Compute the requested metrics; returns the report as a dict (see the module docstring).

    ``estimator``: the label and feature reader of ``control`` and ``fidelity`` (default: the packaged
    :func:`~aniportrait.eval.estimator.builtin_estimator`).
    """
    unknown = sorted(set(metrics_wanted) - set(METRICS))
    if unknown:
        raise EvalError(f"unknown metrics {', '.join(unknown)}; choose from {', '.join(METRICS)}")
    if {"fid", "kid", "identity"} & set(metrics_wanted) and inception is None:
        raise EvalError("fid, kid and identity need --inception PATH (pt_inception-2015-12-05-6726825d.pth)")
    dataset = PortraitDataset(data_dir)
    bank = LabelBank.from_dataset(dataset)
    stage = 2
    image_size, face_size = generator.config.hr_img_size, generator.default_face_size(stage)
    report: dict = {"num": min(num, len(dataset)), "image_size": image_size, "face_size": face_size}
    n = report["num"]
    if set(ESTIMATOR_METRICS) & set(metrics_wanted) and not is_synthetic_dataset(dataset.meta):
        skipped = [m for m in ESTIMATOR_METRICS if m in metrics_wanted]
        metrics_wanted = tuple(m for m in metrics_wanted if m not in ESTIMATOR_METRICS)
        report["skipped"] = (
            f"{', '.join(skipped)}: the estimator reads only `aniportrait data synth` figures; this dataset's source "
            f"is {str(dataset.meta.get('source', 'not given'))!r}"
        )
    if set(ESTIMATOR_METRICS) & set(metrics_wanted) and estimator is None:
        estimator = builtin_estimator()
    with torch.no_grad():
        if {"fid", "kid", "fidelity"} & set(metrics_wanted):
            fake = list(
                metrics.generated_batches(
                    generator,
                    body,
                    bank,
                    n,
                    batch_size=batch_size,
                    seed=seed,
                    stage=stage,
                    face_size=face_size,
                    impl=impl,
                )
            )
            real = list(_real_batches(dataset, n, batch_size, image_size, face_size))
        if "fidelity" in metrics_wanted:
            f_real = _estimator_features(estimator, real)
            report["fidelity"] = metrics.frechet_distance(_estimator_features(estimator, fake), f_real)
            if len(dataset) >= 2 * n:
                more = list(_real_batches(dataset, n, batch_size, image_size, face_size, start=n))
                report["fidelity_floor"] = metrics.frechet_distance(_estimator_features(estimator, more), f_real)
        if {"fid", "kid"} & set(metrics_wanted):
            for region in ("image", "face"):
                f_fake = metrics.extract_features(inception, fake, batch_size, key=region)
                f_real = metrics.extract_features(inception, real, batch_size, key=region)
                scores = metrics.fid_kid(f_real, f_fake, subset_size=min(1000, n), seed=seed)
                name = "full" if region == "image" else "face"
                if "fid" in metrics_wanted:
                    report[f"fid_{name}"] = scores["fid"]
                if "kid" in metrics_wanted:
                    report[f"kid_x100_{name}"] = scores["kid_x100"]
        g = torch.Generator().manual_seed(seed)
        if "control" in metrics_wanted:
            labels = control_labels(bank, n, g)
            errors = control.control_errors(
                generator, body, labels, estimator, face_size, stage, batch_size=batch_size, seed=seed, impl=impl
            )
            report.update({f"control_{k}": v for k, v in errors.items()})
            floor = estimator.floor(image_size) if hasattr(estimator, "floor") else {}
            keys = ("camera_deg", "head_pose_deg", "shoulder_pose_deg", "expression")
            report.update({f"control_floor_{k}": floor["control"][k] for k in keys if k in floor.get("control", {})})
        if "identity" in metrics_wanted:
            camera, pose = sample_camera_pose(bank, identity_controls, g)
            controls = {"camera": camera, "pose": pose, "expression": sample_expression(bank, identity_controls, g)}
            scores = control.identity_consistency(
                generator,
                body,
                list(range(identity_seeds)),
                controls,
                inception,
                face_size=face_size,
                stage=stage,
                impl=impl,
            )
            report.update({f"identity_{k}": v for k, v in scores.items() if isinstance(v, float)})
    return report


def format_table(report: dict) -> str:
    """The report as an aligned two-column table."""
    width = max(len(k) for k in report)
    lines = []
    for key, value in report.items():
        text = f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(f"{key.ljust(width)}  {text}")
    return "\n".join(lines)


def to_json(report: dict) -> str:
    return json.dumps(report, indent=2, sort_keys=False)
