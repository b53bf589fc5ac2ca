"""CPU time of one reconstruction-warm-up step of the built-in default's recipe at one and at two threads, side by
side in one process (``torch.set_num_threads`` alternating round by round): the plain step of its first four runs
and the step with the 32x32 full-size window of its last. Run it on an otherwise idle machine: two threads that
share a core with another process run slower than one.

    python docs/training/thread_scaling.py DATA --json docs/training/thread_scaling.json
    python docs/training/thread_scaling.py DATA --set generator.hidden_dim=96 --json ...   # another model
"""

from __future__ import annotations

import argparse
import json
import os
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
VARIANTS = {"plain": [], "window": ["recon_window=32"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="a dataset folder (aniportrait data synth ... --res 128)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--set", action="append", default=[], help="a setting over the recipe's (repeatable)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    load_before = os.getloadavg()  # 1, 5 and 15 minutes: the machine should be idle
    fits = {}
    for name, extra in VARIANTS.items():
        off = ["shape_prior_steps=0", "deform_prior_steps=0", "recon_steps=0", "recon_images=64"]
        config = load_preset("small").with_overrides([*GEN, *off, *args.set, *extra])
        trainer = Trainer(config, args.data, tempfile.mkdtemp(), progress=False)
        images = trainer.reconstruction_images()

        def fit(steps, trainer=trainer, images=images):
            return trainer.reconstruct(steps, images=images)

        fit(1)  # warm
        fits[name] = fit
    seconds = {f"{name}_{threads}": [] for name in VARIANTS for threads in (1, 2)}
    for _ in range(args.rounds):
        for name, fit in fits.items():
            for threads in (1, 2):
                torch.set_num_threads(threads)
                start = time.perf_counter()
                fit(args.steps)
                seconds[f"{name}_{threads}"].append((time.perf_counter() - start) / args.steps)
    medians = {key: statistics.median(values) for key, values in seconds.items()}
    record = {
        "machine": cpu_name(),
        "cores": os.cpu_count(),
        "load_average_before": load_before,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "settings": args.set,
        "seconds_per_step": seconds,
        "median_seconds_per_step": medians,
        "speedup_two_threads": {name: medians[f"{name}_1"] / medians[f"{name}_2"] for name in VARIANTS},
    }
    print(json.dumps(record, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
