"""Control errors and fidelity of reference models, read by the synthetic world's learned estimator.

Writes ``docs/estimator/baselines.json``: for each model, the ``aniportrait eval --metrics control,fidelity`` report
(stage 2, the final 128x128 renders, ``--num`` label rows of the held-out dataset) and ``snapshot_metrics`` at
stage 1 and stage 2 (64 renders, as a training run logs them), with their wall times. Models:

- each ``--model NAME=CHECKPOINT`` (``baselines.json``: the built-in default when this was first run);
- ``--model untrained``: the ``small`` config as the package initialises it without a checkpoint (seed 0, planar
  manifolds, no label bank).

Usage (one CPU thread)::

    OMP_NUM_THREADS=1 python docs/estimator/baselines.py --data DATA/heldout \\
        --model default=src/aniportrait/assets/models/default.safetensors --model untrained \\
        --out docs/estimator/baselines.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import time
from pathlib import Path

import torch

from aniportrait.checkpoint import load_generator
from aniportrait.config import SMALL
from aniportrait.data.dataset import PortraitDataset
from aniportrait.eval.estimator import builtin_estimator, builtin_estimator_path
from aniportrait.eval.report import evaluate
from aniportrait.eval.snapshot import snapshot_metrics
from aniportrait.models.generator import AniPortraitGenerator, init_planar_manifolds
from aniportrait.pretrained import DEFAULT_INIT_SEED, body_for_checkpoint


def untrained_small():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(DEFAULT_INIT_SEED)
        generator = AniPortraitGenerator(SMALL)
    init_planar_manifolds(generator)
    return generator.eval(), {"body": "procedural"}, None


def sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def measure(generator, body, data: str, num: int, snapshot_num: int) -> dict:
    t0 = time.time()
    report = evaluate(generator, body, data, metrics_wanted=("control", "fidelity"), num=num, batch_size=8, seed=0)
    out = {"eval": report, "eval_seconds": round(time.time() - t0, 1)}
    dataset = PortraitDataset(data, check=False)
    for stage in (1, 2):
        t0 = time.time()
        out[f"snapshot_stage{stage}"] = snapshot_metrics(generator, body, dataset, num=snapshot_num, stage=stage)
        out[f"snapshot_stage{stage}_seconds"] = round(time.time() - t0, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="held-out synthetic dataset")
    parser.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="NAME=CHECKPOINT",
        help="NAME=CHECKPOINT, or 'untrained' (repeatable)",
    )
    parser.add_argument("--out", required=True)
    parser.add_argument("--num", type=int, default=256)
    parser.add_argument("--snapshot-num", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    meta = json.loads((Path(args.data) / "dataset.json").read_text())
    result = {
        "command": "OMP_NUM_THREADS=1 python docs/estimator/baselines.py "
        f"--data {Path(args.data).name} {' '.join('--model ' + m for m in args.model)} --num {args.num}",
        "data": {"source": meta.get("source"), "count": meta.get("count"), "image_size": meta.get("image_size")},
        "estimator_sha256": sha256(builtin_estimator_path()),
        "estimator_floors": builtin_estimator().record.get("floors"),
        "machine": f"{platform.machine()}, torch {torch.__version__}, 1 thread",
        "models": {},
    }
    if any("=" not in m and m != "untrained" for m in args.model):
        parser.error("--model takes NAME=CHECKPOINT or 'untrained'")
    checkpoints = dict(m.split("=", 1) if "=" in m else (m, None) for m in args.model)
    for name, path in checkpoints.items():
        generator, metadata, valid_index = load_generator(path) if path else untrained_small()
        body = body_for_checkpoint(metadata, valid_index, None)
        entry = {"checkpoint_sha256": sha256(path)} if path else {"checkpoint": "none (small)"}
        entry.update(measure(generator, body, args.data, args.num, args.snapshot_num))
        result["models"][name] = entry
        print(name, json.dumps(entry, indent=1), flush=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
