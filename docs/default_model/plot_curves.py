"""Plot a training run's curves: losses and logits from stats.jsonl, control errors and fidelity from snapshots.jsonl.

Needs matplotlib (not a dependency of the package: ``pip install matplotlib``).

    python docs/default_model/plot_curves.py RUN [RUN ...] --out docs/default_model/curves.png [--floor-size 32]

Several run folders (stage 1, then stage 2) are drawn one after the other on a common step axis. The estimator's
floors (its own held-out errors, shipped with its weights) are drawn as dashed lines.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

CONTROL = (
    ("ctl_camera_deg", "camera_deg", "camera (deg)"),
    ("ctl_head_deg", "head_pose_deg", "head pose (deg)"),
    ("ctl_shoulder_deg", "shoulder_pose_deg", "shoulder pose (deg)"),
    ("ctl_expression", "expression", "expression (L1)"),
)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    from aniportrait.eval.estimator import builtin_estimator

    estimator = builtin_estimator()
    fig, axes = plt.subplots(2, 4, figsize=(17, 7.5))
    offset = 0
    for run in args.runs:
        stats, snaps = read_jsonl(run / "stats.jsonl"), read_jsonl(run / "snapshots.jsonl")
        config = json.loads((run / "config.json").read_text())
        label = f"{run.name} (stage {config['stage']})"
        steps = [offset + s["step"] for s in stats]
        for key, name in (("d_face", "D face"), ("d_torso", "D torso"), ("d_whole", "D whole")):
            axes[0, 0].plot(steps, [s[key] for s in stats], lw=0.6, label=f"{name}, {label}")
        axes[0, 0].set_title("discriminator losses (weighted)")
        for key in ("face", "torso", "whole"):
            gap = [s[f"logit_real_{key}"] - s[f"logit_fake_{key}"] for s in stats]
            axes[0, 1].plot(steps, gap, lw=0.6, label=f"{key}, {label}")
        axes[0, 1].set_title("D logit gap (real - fake)")
        if "imitation" in stats[0]:
            axes[0, 2].semilogy(steps, [s["imitation"] for s in stats], lw=0.6, label=label)
        axes[0, 2].set_title("imitation term (weighted)")
        snap_steps = [offset + s["step"] for s in snaps]
        if snaps:
            axes[0, 3].plot(snap_steps, [s["fid_est"] for s in snaps], "o-", label=label)
            image_size = 32 if config["stage"] == 1 else 128
            floor = estimator.floor(image_size)
            fidelity_floor = floor.get("fidelity", {}).get("64", {}).get("mean")
            if fidelity_floor:
                axes[0, 3].axhline(fidelity_floor, ls="--", c="gray", lw=0.8)
            for ax, (key, floor_key, title) in zip(axes[1], CONTROL):
                ax.plot(snap_steps, [s[key] for s in snaps], "o-", label=label)
                ax.axhline(floor["control"][floor_key], ls="--", c="gray", lw=0.8)
                ax.set_title(f"control error: {title}")
        offset = steps[-1] if steps else offset
    axes[0, 3].set_title("fidelity (estimator Frechet distance, 64 renders)")
    for ax in axes.flat:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.suptitle("dashed: the estimator's floor (its own error on held-out data)")
    fig.tight_layout()
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
