"""Continue a `small` run from a saved training state for a few steps at another learning rate, printing the mean
discriminator logits of reals and fakes over each 10 steps (the numbers in lr_from_state.txt).

    python docs/training/lr_from_state.py RUN/state.safetensors DATA STEPS [--set KEY=VALUE ...]

The networks and optimiser states are loaded from the state; the learning rates are then set to the config's.
"""

import argparse
import tempfile

import torch

from aniportrait.train.config import PRESETS
from aniportrait.train.loop import Trainer
from aniportrait.train.state import load_training_state

KEYS = ("face", "torso", "whole")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("state")
    parser.add_argument("data")
    parser.add_argument("steps", type=int)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = PRESETS["small"].with_overrides(["snapshot_metrics=0", "total_steps=100000", *args.overrides])
    trainer = Trainer(config, args.data, tempfile.mkdtemp(), progress=False)
    start, _, _ = load_training_state(
        args.state, modules=trainer._modules(), optimizers={"G": trainer.opt_G, "D": trainer.opt_D}
    )
    for group in trainer.opt_G.param_groups:
        group["lr"] = config.lr_g
    for group in trainer.opt_D.param_groups:
        group["lr"] = config.lr_d
    window = []
    for step in range(start, start + args.steps):
        window.append(trainer.train_step(step))
        if len(window) == 10:
            means = {
                f"{kind}_{key}": sum(w[f"logit_{kind}_{key}"] for w in window) / 10
                for key in KEYS
                for kind in ("real", "fake")
            }
            print(step, " ".join(f"{k}={v:.3f}" for k, v in means.items()), flush=True)
            window = []


if __name__ == "__main__":
    main()
