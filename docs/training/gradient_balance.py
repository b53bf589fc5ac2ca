"""Gradient norm of every loss term on every network group, in the D and the G phase of training steps.

Builds a :class:`~aniportrait.train.loop.Trainer` (a preset plus ``--set`` overrides, warm-ups included), trains
``--warm`` steps, then for ``--measure`` further steps takes, before the optimiser steps, the gradient norm of each
weighted term of the D phase on each discriminator and of the G phase on each generator network, one
``torch.autograd.grad`` per term. Prints the median over the measured steps and writes them as JSON.

Usage:
    python docs/training/gradient_balance.py DATA --config small [--set KEY=VALUE ...] [--warm 20] [--measure 5]
        [--json docs/training/gradient_balance.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile

import torch

from aniportrait.train.config import PRESETS
from aniportrait.train.loop import Trainer


def term_norms(terms: dict[str, torch.Tensor], groups: dict[str, list[torch.nn.Parameter]]) -> dict[str, dict]:
    """{term: {group: ||d term / d group||}} (0 where a term does not reach a group)."""
    out = {}
    for name, value in terms.items():
        if not value.requires_grad:
            continue
        params = [p for ps in groups.values() for p in ps]
        grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
        offset, row = 0, {}
        for group, ps in groups.items():
            gs = [g for g in grads[offset : offset + len(ps)] if g is not None]
            row[group] = float(torch.sqrt(sum((g.float() ** 2).sum() for g in gs))) if gs else 0.0
            offset += len(ps)
        out[name] = row
    return out


def measure(trainer: Trainer, step: int) -> dict[str, dict]:
    """The norms of one step's D and G phase terms (the step itself is not taken)."""
    real = trainer.real_batch(step)
    labels = trainer.fake_labels(step)
    fake = trainer.render(trainer.G, labels)
    D, G = trainer.D, trainer.G
    d_groups = {k: list(getattr(D, k).parameters()) for k in ("whole", "face", "torso")}
    g_groups = {
        k: [p for p in getattr(G, k).parameters() if p.requires_grad]
        for k in ("radiance_net", "sample_net", "deform_net", "smoother", "sr_net")
    }
    g_groups = {k: v for k, v in g_groups.items() if v}
    d_terms, _ = trainer.objective.discriminator(real, {**fake, "camera": labels["camera"]})
    r1_terms, _ = trainer.objective.discriminator_reg(real)
    rng = torch.Generator().manual_seed(step)
    g_terms, _ = trainer.objective.generator(G, fake, labels, rng)
    return {"D": term_norms({**d_terms, **r1_terms}, d_groups), "G": term_norms(g_terms, g_groups)}


def median_table(rows: list[dict]) -> dict:
    out = {}
    for phase in rows[0]:
        out[phase] = {
            term: {group: statistics.median(r[phase][term][group] for r in rows) for group in rows[0][phase][term]}
            for term in rows[0][phase]
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--config", default="small")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--warm", type=int, default=20, help="training steps before measuring")
    parser.add_argument("--measure", type=int, default=5, help="steps measured (median reported)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = PRESETS[args.config].with_overrides(args.overrides + ["snapshot_metrics=0"])
    trainer = Trainer(config, args.data, tempfile.mkdtemp(), progress=False)
    trainer._warm_up()
    for step in range(args.warm):
        trainer.train_step(step)
    rows = [measure(trainer, args.warm + k) for k in range(args.measure)]
    table = median_table(rows)
    for phase, terms in table.items():
        groups = list(next(iter(terms.values())))
        print(f"{phase} phase   " + "".join(f"{g:>14}" for g in groups))
        for term, row in terms.items():
            print(f"  {term:<12}" + "".join(f"{row[g]:14.4g}" for g in groups))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "config": args.config,
                    "overrides": args.overrides,
                    "warm": args.warm,
                    "measure": args.measure,
                    "median_norms": table,
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
