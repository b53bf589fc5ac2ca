"""CPU time of one reconstruction-warm-up step of the built-in default's recipe with each stage-1 face view: the
field at its own intersections (plain), the fine textures (``face_textures``) and the field where the lookups show
the intersections (``face_at_lookup``), side by side in one process, the variants alternating round by round.

    python docs/training/face_at_lookup/step_time.py DATA --json docs/training/face_at_lookup/step_time.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time

import torch

from aniportrait.machine import cpu_name
from aniportrait.train.config import load_preset
from aniportrait.train.loop import Trainer

# docs/default_model/train.sh's generator settings
GEN = [
    "generator.mean_shape_canonical=true",
    "generator.color_modulation=true",
    "generator.field_hr_textures=true",
    "generator.expression_gate_slope=0.5",
    "generator.expression_gate_depth_low=-0.04",
    "generator.expression_gate_depth_high=-0.025",
]
VARIANTS = {"plain": [], "face_textures": ["face_textures=true"], "face_at_lookup": ["face_at_lookup=true"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="a dataset folder (aniportrait data synth ... --res 128)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fits = {}
    for name, extra in VARIANTS.items():
        off = ["shape_prior_steps=0", "deform_prior_steps=0", "recon_steps=0", "recon_images=64"]
        config = load_preset("small").with_overrides([*GEN, *off, *extra])
        trainer = Trainer(config, args.data, tempfile.mkdtemp(), progress=False)
        images = trainer.reconstruction_images()

        def fit(steps, trainer=trainer, images=images):
            return trainer.reconstruct(steps, images=images)

        fit(1)  # warm
        fits[name] = fit
    seconds = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name, fit in fits.items():
            start = time.perf_counter()
            fit(args.steps)
            seconds[name].append((time.perf_counter() - start) / args.steps)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    record = {
        "machine": cpu_name(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": args.threads,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "seconds_per_step": seconds,
        "median_seconds_per_step": medians,
        "ratio_to_plain": {name: medians[name] / medians["plain"] for name in medians},
    }
    print(json.dumps(record, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
