"""How much of each expression coefficient the deformation warm-up teaches DeformNet, and at which learning rate.

Runs stage 1's deformation warm-up alone (``fit_deformation_to_3dmm``: the imitation, smoothness and minimal
deformation losses on the 3DMM teacher's points, Adam with the warm-ups' betas) from a fresh generator built as the
default's first run builds it (the ``small`` preset with the default's generator settings, seed 0, labels drawn from
``--data``), and every ``--every`` steps measures how much of the teacher's deformation DeformNet follows for each of
the four animated coefficients at 0.5 and 1 (``aniportrait.train.imitation.follow_fractions``, identities 0-7 of the
data's label bank). ``--only K`` keeps only coefficient K of the drawn expressions (the others at 0): the fit of one
coefficient on its own. ``--set KEY=VALUE`` changes a training setting on top of the default's (for example
``imitation_region_share=0.5``).

    OMP_NUM_THREADS=1 python docs/training/deformation_warmup_probe.py --data DATA [--steps 1500] [--lr 1e-3]
        [--only K] [--set KEY=VALUE ...] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from aniportrait.models.face3dmm import EXPRESSION_MEANING
from aniportrait.models.generator import sample_identity_latents
from aniportrait.train.config import load_preset
from aniportrait.train.imitation import follow_fractions
from aniportrait.train.loop import TAG_DEFORM_PRIOR, Trainer
from aniportrait.train.warmups import DEFORM_PRIOR_LR, WarmupProgress, fit_deformation_to_3dmm

# The built-in default's generator settings (docs/default_model/train.sh).
DEFAULT_SETTINGS = [
    "generator.mean_shape_canonical=true",
    "generator.color_modulation=true",
    "generator.field_hr_textures=true",
    "generator.expression_gate_slope=0.5",
    "generator.expression_gate_depth_low=-0.04",
    "generator.expression_gate_depth_high=-0.025",
    "generator.hidden_dim=96",
]
ANIMATED = 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=DEFORM_PRIOR_LR)
    parser.add_argument("--only", type=int, default=None, choices=range(ANIMATED))
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--set", action="append", default=[], help="a training setting KEY=VALUE (repeatable)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    config = load_preset("small").with_overrides(DEFAULT_SETTINGS + args.set)
    with tempfile.TemporaryDirectory() as run:
        trainer = Trainer(config, args.data, Path(run) / "run", progress=False)
    G, teacher = trainer.G, trainer.teacher
    z_id = sample_identity_latents(G.config, list(range(8)), id_bank=G.id_bank)[0]

    def draw(step: int) -> dict[str, torch.Tensor]:
        labels = trainer.fake_labels(step, TAG_DEFORM_PRIOR)
        if args.only is not None:
            kept = torch.zeros_like(labels["expression"])
            kept[:, args.only] = labels["expression"][:, args.only]
            labels["expression"] = kept
        return labels

    curve, start = [], time.perf_counter()

    def measure(done: int, losses: list[float]) -> None:
        if done % args.every and done != args.steps:
            return
        fractions = follow_fractions(G.deform_net, teacher, z_id, coefficients=range(ANIMATED))
        row = {
            "step": done,
            "imitation_mse_last_100": sum(losses[-100:]) / len(losses[-100:]),
            "seconds": round(time.perf_counter() - start, 1),
            **{f"{EXPRESSION_MEANING[k]} {v}": round(m["fraction"], 3) for (k, v), m in fractions.items()},
        }
        curve.append(row)
        print(json.dumps(row), flush=True)

    fit_deformation_to_3dmm(
        G, teacher, draw, args.steps, config.seed, config, WarmupProgress(on_step=measure), lr=args.lr
    )
    result = {
        "data": Path(args.data).name,
        "steps": args.steps,
        "lr": args.lr,
        "only": None if args.only is None else EXPRESSION_MEANING[args.only],
        "settings": args.set,
        "threads": torch.get_num_threads(),
        "fraction_of_the_teacher_followed": curve,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
