"""The reconstruction fit's last iterate against moving averages of its iterates, from one trajectory.

Runs ``aniportrait train`` in this process with the given options (``recon_ema`` must be 0: the fit's own trajectory is
the same with or without an average, since an average only replaces the parameters at the end) and, alongside the
reconstruction fit, keeps an exponential moving average of the trained parameters for each ``--decay``, updated after
every step exactly as ``recon_ema`` updates its own (``aniportrait.train.warmups.update_ema``). When the fit ends it
writes ``OUT/last.safetensors`` (the last iterate) and ``OUT/ema_DECAY.safetensors`` for each decay, before the run's
adversarial step; the run folder itself is ``OUT/run``. Each file is then measured with
``docs/estimator/baselines.py``.

Usage (one CPU thread; the default's last run continued from the built-in default)::

    OMP_NUM_THREADS=1 python docs/training/weight_average.py --out OUT --decay 0.99 --decay 0.995 --decay 0.999 -- \\
        --data DATA --config small --set generator.mean_shape_canonical=true ... \\
        --init-from src/aniportrait/assets/models/default.safetensors
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch

import aniportrait.train.loop as loop
from aniportrait.checkpoint import save_generator
from aniportrait.cli import main as cli
from aniportrait.train.warmups import update_ema


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--decay", type=float, action="append", required=True)
    args, train_args = parser.parse_known_args()
    if train_args and train_args[0] == "--":
        train_args = train_args[1:]
    args.out.mkdir(parents=True, exist_ok=True)
    fit = loop.fit_generator_to_images

    def fit_with_averages(G, params, render, images, steps, seed, cfg, regularisers, progress=None):
        if cfg.recon_ema:
            sys.exit("weight_average.py keeps its own averages: run it with recon_ema=0")
        averages = {decay: [p.detach().clone() for p in params] for decay in args.decay}
        after = progress.after

        def after_with_averages(done, total, losses):
            for decay, average in averages.items():
                update_ema(average, params, decay)
            after(done, total, losses)

        progress.after = after_with_averages
        history = fit(G, params, render, images, steps, seed, cfg, regularisers, progress)
        write(G, params, list(params), args.out / "last.safetensors", cfg, "the fit's last iterate")
        for decay, average in averages.items():
            write(G, params, average, args.out / f"ema_{decay:g}.safetensors", cfg, f"EMA {decay:g} of the fit")
        (args.out / "losses.json").write_text(json.dumps({"losses": history, "steps": steps}))
        return history

    loop.fit_generator_to_images = fit_with_averages
    cli.main(["train", "--out", str(args.out / "run"), *train_args], standalone_mode=False)


def write(G, params, values, path: Path, cfg, note: str) -> None:
    """Save a copy of ``G`` whose ``params`` take ``values``."""
    copy_of = copy.deepcopy(G)
    index = {id(p): i for i, p in enumerate(params)}
    with torch.no_grad():
        for p_copy, p in zip(copy_of.parameters(), G.parameters()):
            if id(p) in index:
                p_copy.copy_(values[index[id(p)]])
    copy_of.id_bank = G.id_bank
    save_generator(path, copy_of, body="procedural", face_model="procedural", rendering=cfg.rendering, note=note)


if __name__ == "__main__":
    run()
