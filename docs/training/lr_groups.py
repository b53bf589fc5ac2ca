"""Which generator parameters let G undo each discriminator step: short continuations of a trained run.

From a run's state (generator, EMA, discriminators and D's optimiser, as ``--init-from`` loads them), train N more
steps of the ``small`` recipe with one change and log the discriminators' mean logit gap (real minus fake) every
10 steps. A change is either config overrides (``--set lr_g=5e-6``) or learning-rate factors on groups of
generator parameters named by prefix (``--group radiance_net=0.1``: every parameter whose name starts with it).
A gap near 0 while the fakes plainly differ from the data means G undoes each D step; a gap that stays positive
means D keeps a lead that G's gradient can follow.

    OMP_NUM_THREADS=1 python docs/training/lr_groups.py --from RUN/s1 --data DATA --name base
    OMP_NUM_THREADS=1 python docs/training/lr_groups.py --from RUN/s1 --data DATA --name rad01 \\
        --group radiance_net=0.1
    OMP_NUM_THREADS=1 python docs/training/lr_groups.py --from RUN/s1 --data DATA --name scale01 \\
        --set radiance_lr_scale=0.1

Each run appends its gaps to ``lr_groups.json`` under its name.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

import torch

from aniportrait.train.config import PRESETS
from aniportrait.train.loop import Trainer

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", required=True, help="a stage-1 run folder (its state is loaded)")
    parser.add_argument("--data", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--group", action="append", default=[], metavar="PREFIX=FACTOR")
    parser.add_argument("--json", default=str(HERE / "lr_groups.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)

    fixed = [f"total_steps={args.steps}", "deform_prior_steps=0", "shape_prior_steps=0", "snapshot_metrics=0"]
    fixed += ["sample_every=100000", "checkpoint_every=100000", "log_every=10"]
    config = PRESETS["small"].with_overrides(fixed + args.overrides)
    with tempfile.TemporaryDirectory() as run:
        trainer = Trainer(config, args.data, Path(run) / "run", init_from=args.source, progress=False)
        if args.group:
            factors = {prefix: float(f) for prefix, f in (g.split("=") for g in args.group)}
            lr_of = {id(p): group["lr"] for group in trainer.opt_G.param_groups for p in group["params"]}
            groups: dict[float, list] = {}
            for name, p in trainer.G.named_parameters():
                if id(p) in lr_of:
                    factor = next((f for prefix, f in factors.items() if name.startswith(prefix)), 1.0)
                    groups.setdefault(lr_of[id(p)] * factor, []).append(p)
            betas = (config.beta1, config.beta2)
            trainer.opt_G = torch.optim.Adam([{"params": ps, "lr": lr} for lr, ps in groups.items()], betas=betas)
            trainer.phases = [
                dataclasses.replace(phase, optimizer=trainer.opt_G) if phase.name == "G" else phase
                for phase in trainer.phases
            ]
        trainer.run()
        rows = [json.loads(line) for line in (Path(run) / "run" / "stats.jsonl").read_text().splitlines()]
    gaps = [
        {
            "step": r["step"],
            **{f"gap_{d}": r[f"logit_real_{d}"] - r[f"logit_fake_{d}"] for d in ("whole", "face", "torso")},
            "d_face": r["d_face"],
        }
        for r in rows
    ]
    path = Path(args.json)
    results = json.loads(path.read_text()) if path.exists() else {}
    results[args.name] = {"source": args.source, "set": args.overrides, "group": args.group, "steps": gaps}
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(args.name, "face gaps:", [round(g["gap_face"], 2) for g in gaps])


if __name__ == "__main__":
    main()
