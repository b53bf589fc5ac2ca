"""Training of the synthetic world's label estimator (:mod:`aniportrait.eval.estimator`), and its floors.

Run it as a module (one CPU thread; about 40 minutes for the shipped weights)::

    aniportrait data synth DATA/train --n 24000 --res 128 --seed 101
    aniportrait data synth DATA/heldout --n 2000 --res 128 --seed 202
    python -m aniportrait.eval.estimator_train --train DATA/train --heldout DATA/heldout \\
        --out src/aniportrait/assets/estimator/synthetic.safetensors --log docs/estimator/training.json

Data
    Both datasets are decoded once into uint8 tensors in memory (portraits 128x128, faces 64x64). Targets are the
    24 labels of :data:`~aniportrait.eval.estimator.TARGET_NAMES`, standardised by the training set's mean and std.

Augmentation (per group of :data:`AUG_GROUP` images of a batch)
    Resolution: the portrait is downsampled to a side in 32..128 (32 or 128 a third of the time each, else uniform)
    and the face to 24..64 (likewise), with or without antialiasing (aliased renders), then resized back to the
    network's input sides by the estimator's own resize. Photometric: a per-channel gain and offset and Gaussian
    pixel noise, all small, so that imperfect renders still read.

Optimisation
    AdamW, a linear warm-up then cosine decay, Huber loss on the standardised targets; a fixed number of steps (the
    run is a function of ``--seed``). Every ``--eval-every`` steps the held-out errors at both render sizes are
    logged (the curve).

Floors (:func:`measure_floors`, written into the weights' ``record`` and the log)
    For each render size (portrait 128 with face 64, portrait 32 with face 32): the held-out mean absolute errors per
    axis (:func:`aniportrait.eval.control.label_errors`), and the fidelity floor: the Frechet distance between the
    estimator features of disjoint held-out subsets of N images each (averaged over several disjoint pairs for small
    N), since a Frechet distance on N samples has a bias that falls with N.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from aniportrait.data.dataset import PortraitDataset
from aniportrait.eval.control import label_errors
from aniportrait.eval.estimator import (
    TARGET_NAMES,
    EstimatorConfig,
    SyntheticLabelEstimator,
    encode_targets,
    estimator_features,
    resize_square,
    save_estimator,
)
from aniportrait.eval.metrics import frechet_distance
from aniportrait.images import quantize, resample_grid
from aniportrait.machine import cpu_name

AUG_GROUP = 16  # images per resolution draw
PORTRAIT_RANGE = (32, 128)
FACE_RANGE = (24, 64)
GAIN, OFFSET, NOISE = 0.08, 0.05, 0.03  # photometric augmentation: max |gain - 1|, max |offset|, max noise std
FLOOR_SIZES = ((128, 64), (32, 32))  # (portrait, face) render sides: the small model's final and stage-1 renders
FLOOR_NS = (64, 256, 1000)  # subset sizes of the fidelity floor
FLOOR_PAIRS = 8  # at most this many disjoint pairs per N


def load_arrays(path: str | Path) -> tuple[Tensor, Tensor, Tensor, dict]:
    """A dataset as uint8 portraits [N, 3, R, R], faces [N, 3, F, F], raw targets [N, 24] and dataset.json."""
    dataset = PortraitDataset(path, check=False)
    n = len(dataset)
    images = torch.empty(n, 3, dataset.image_size, dataset.image_size, dtype=torch.uint8)
    faces = torch.empty(n, 3, dataset.face_size, dataset.face_size, dtype=torch.uint8)
    for i in range(n):
        item = dataset.get(i, flip=False)
        images[i], faces[i] = quantize(item["image"]), quantize(item["face"])
    labels = {k: torch.from_numpy(np.asarray(dataset.labels[k])) for k in ("camera", "pose", "expression")}
    return images, faces, encode_targets(labels["camera"], labels["pose"], labels["expression"]), dataset.meta


def to_signed(pixels: Tensor) -> Tensor:
    """uint8 [..., 3, H, W] -> float32 in [-1, 1], a new tensor (the input is never written, whatever its dtype)."""
    return pixels.to(torch.float32) / 127.5 - 1.0


def _draw_side(lo: int, hi: int, g: torch.Generator) -> int:
    """32 (the stage-1 render side) or ``hi`` a third of the time each, else uniform in lo..hi."""
    u = float(torch.rand((), generator=g))
    if u < 1 / 3:
        return 32
    if u < 2 / 3:
        return hi
    return int(torch.randint(lo, hi + 1, (), generator=g))


def _degrade(x: Tensor, side: int, antialias: bool) -> Tensor:
    if side == x.shape[-1]:
        return x
    return F.interpolate(x, size=(side, side), mode="bilinear", antialias=antialias, align_corners=False)


def augment(images: Tensor, faces: Tensor, config: EstimatorConfig, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """uint8 portraits and faces -> augmented float inputs at the estimator's input sides (module docstring)."""
    out_i, out_f = [], []
    for start in range(0, images.shape[0], AUG_GROUP):
        x, y = to_signed(images[start : start + AUG_GROUP]), to_signed(faces[start : start + AUG_GROUP])
        aa = bool(torch.rand((), generator=g) < 0.5)
        x = _degrade(x, min(_draw_side(*PORTRAIT_RANGE, g), x.shape[-1]), aa)
        y = _degrade(y, min(_draw_side(*FACE_RANGE, g), y.shape[-1]), aa)
        out_i.append(resize_square(x, config.portrait_size))
        out_f.append(resize_square(y, config.face_size))
    x, y = torch.cat(out_i), torch.cat(out_f)
    b = x.shape[0]
    result = []
    for t in (x, y):
        gain = 1.0 + GAIN * (2 * torch.rand(b, 3, 1, 1, generator=g) - 1)
        offset = OFFSET * (2 * torch.rand(b, 1, 1, 1, generator=g) - 1)
        noise = NOISE * torch.rand(b, 1, 1, 1, generator=g) * torch.randn(t.shape, generator=g)
        result.append((t * gain + offset + noise).clamp_(-1, 1))
    return result[0], result[1]


def render_size_inputs(images: Tensor, faces: Tensor, size: int, face_size: int) -> tuple[Tensor, Tensor]:
    """uint8 data -> float [-1, 1] resampled (antialiased) to a render's ray grid, as eval resizes data."""
    return resample_grid(to_signed(images), size, antialias=True), resample_grid(
        to_signed(faces), face_size, antialias=True
    )


@torch.no_grad()
def predict(model: SyntheticLabelEstimator, images: Tensor, faces: Tensor, size: int, face_size: int) -> dict:
    """Decoded labels of uint8 data seen at a render size, in batches."""
    model.eval()
    parts = []
    for s in range(0, images.shape[0], 128):
        x, y = render_size_inputs(images[s : s + 128], faces[s : s + 128], size, face_size)
        parts.append(model.standardised(x, y))
    return model.decode(torch.cat(parts))


def heldout_errors(model, images, faces, targets, size, face_size) -> dict[str, float]:
    """label_errors of the held-out data at one render size, plus the MAE of each target (``mae_<name>``)."""
    est = predict(model, images, faces, size, face_size)
    true = model.decode((targets - model.target_mean) / model.target_std)
    errors = label_errors(est, true)
    flat = torch.cat([est["camera"], est["pose"].flatten(1), est["expression"][:, :4]], dim=1)
    mae = (flat.double() - targets.double()).abs().mean(0)
    errors.update({f"mae_{name}": float(v) for name, v in zip(TARGET_NAMES, mae)})
    return errors


def fidelity_floor(features: Tensor, sizes=FLOOR_NS, pairs: int = FLOOR_PAIRS, seed: int = 0) -> dict[str, dict]:
    """Frechet distance between disjoint random subsets of N rows of ``features``: mean and std over up to
    ``pairs`` disjoint pairs, per N (only N with 2N <= rows)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for n in sizes:
        count = min(pairs, features.shape[0] // (2 * n))
        if count < 1:
            continue
        order = torch.randperm(features.shape[0], generator=g)
        halves = order[: 2 * n * count].view(count, 2, n)
        values = [frechet_distance(features[a], features[b]) for a, b in halves]
        out[str(n)] = {"mean": float(np.mean(values)), "std": float(np.std(values)), "pairs": count}
    return out


def measure_floors(model: SyntheticLabelEstimator, images: Tensor, faces: Tensor, targets: Tensor) -> list[dict]:
    """The floors at each size of :data:`FLOOR_SIZES` (module docstring)."""
    floors = []
    for size, face_size in FLOOR_SIZES:
        errors = heldout_errors(model, images, faces, targets, size, face_size)
        x, y = render_size_inputs(images, faces, size, face_size)
        feats = estimator_features(model, x, y)
        floors.append(
            {
                "image_size": size,
                "face_size": face_size,
                "count": int(images.shape[0]),
                "control": errors,
                "fidelity": fidelity_floor(feats),
            }
        )
    return floors


def _lr(step: int, steps: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return 0.5 * peak * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def train(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    t0 = time.time()
    train_images, train_faces, train_targets, train_meta = load_arrays(args.train)
    held_images, held_faces, held_targets, held_meta = load_arrays(args.heldout)
    load_s = time.time() - t0
    print(f"loaded {len(train_images)} train / {len(held_images)} held-out images in {load_s:.0f} s", flush=True)

    torch.manual_seed(args.seed)
    model = SyntheticLabelEstimator(EstimatorConfig()).to(memory_format=torch.channels_last)  # faster CPU convs
    model.target_mean.copy_(train_targets.mean(0))
    model.target_std.copy_(train_targets.std(0).clamp_min(1e-6))
    standardised = (train_targets - model.target_mean) / model.target_std
    params = sum(p.numel() for p in model.parameters())
    print(f"{params} parameters", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    g = torch.Generator().manual_seed(args.seed)
    n = len(train_images)
    order, cursor = torch.randperm(n, generator=g), 0
    curve, running, t_train = [], [], time.time()
    probe = torch.arange(min(args.probe, len(held_images)))
    for step in range(args.steps):
        if cursor + args.batch > n:
            order, cursor = torch.randperm(n, generator=g), 0
        rows = order[cursor : cursor + args.batch]
        cursor += args.batch
        model.train()
        x, y = augment(train_images[rows], train_faces[rows], model.config, g)
        x, y = x.contiguous(memory_format=torch.channels_last), y.contiguous(memory_format=torch.channels_last)
        for group in opt.param_groups:
            group["lr"] = _lr(step, args.steps, args.lr, args.warmup)
        loss = F.smooth_l1_loss(model.head(model.features_prepared(x, y)), standardised[rows], beta=args.huber)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running.append(loss.item())
        done = step + 1
        if done % args.eval_every == 0 or done == args.steps:
            entry = {"step": done, "train_loss": float(np.mean(running)), "seconds": round(time.time() - t_train, 1)}
            running = []
            for size, face_size in FLOOR_SIZES:
                err = heldout_errors(model, held_images[probe], held_faces[probe], held_targets[probe], size, face_size)
                for key in ("camera_deg", "head_pose_deg", "shoulder_pose_deg", "expression"):
                    entry[f"heldout{size}_{key}"] = round(err[key], 4)
            curve.append(entry)
            print(json.dumps(entry), flush=True)
    train_s = time.time() - t_train
    model.eval()
    floors = measure_floors(model, held_images, held_faces, held_targets)
    record = {
        "command": args.command,
        "train": {"path_name": Path(args.train).name, "count": len(train_images), "source": train_meta.get("source")},
        "heldout": {"path_name": Path(args.heldout).name, "count": len(held_images), "source": held_meta.get("source")},
        "steps": args.steps,
        "batch": args.batch,
        "lr": args.lr,
        "seed": args.seed,
        "parameters": params,
        "train_seconds": round(train_s, 1),
        "load_seconds": round(load_s, 1),
        "machine": f"{cpu_name()}, torch {torch.__version__}, {args.threads} thread(s)",
        "floors": floors,
    }
    model.record = record
    save_estimator(model, args.out)
    log = dict(record, curve=curve)
    if args.log:
        Path(args.log).parent.mkdir(parents=True, exist_ok=True)
        Path(args.log).write_text(json.dumps(log, indent=1) + "\n")
    print(json.dumps({"floors": floors}, indent=1), flush=True)
    return log


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the synthetic world's label estimator (CPU).")
    parser.add_argument("--train", required=True, help="training dataset (aniportrait data synth)")
    parser.add_argument("--heldout", required=True, help="held-out dataset (another seed)")
    parser.add_argument("--out", required=True, help="weights file to write (.safetensors)")
    parser.add_argument("--log", help="training log JSON to write (curve and floors)")
    parser.add_argument("--steps", type=int, default=12000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--huber", type=float, default=0.5, help="smooth L1 beta on standardised targets")
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--probe", type=int, default=500, help="held-out images in each curve point")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    args.command = "python -m aniportrait.eval.estimator_train " + " ".join(sys.argv[1:] if argv is None else argv)
    for name in ("train", "heldout"):
        if not (Path(getattr(args, name)) / "dataset.json").is_file():
            parser.error(f"--{name} {getattr(args, name)}: not a dataset folder (no dataset.json)")
    if not Path(args.out).parent.is_dir():
        parser.error(f"--out folder does not exist: {Path(args.out).parent}")
    train(args)


if __name__ == "__main__":
    main()
