"""Plot a recipe's curves: the reconstruction fit's L1 error over its runs, and held-out numbers where measured.

A recipe is a folder of runs (``s1``, ``s1b``, ... as ``docs/default_model/train.sh`` makes them); its runs are drawn
one after the other on a common axis of reconstruction steps. The left panel is the fit's L1 error
(``warmups.jsonl``, a running mean over 20 logged points, 200 steps). The other panels are the held-out numbers
(``aniportrait eval --metrics control,fidelity``) at the end of each run that has them: a run folder's own
``evaluation.json``, or a file given with ``--heldout``; the estimator's floors are dashed. Needs matplotlib.

    python docs/default_model/plot_recipe.py NAME=FOLDER [NAME=FOLDER ...] [--heldout NAME:RUN=FILE ...] --out PNG
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from plot_curves import read_jsonl  # docs/default_model/ is on the path when this script runs

RUNS = ("s1", "s1b", "s1c", "s1d", "s1e")
RECONSTRUCTION = "reconstruction warm-up"
WINDOW = 20  # logged points in the running mean (every tenth step is logged)
HELD_OUT = (
    ("fidelity", "fidelity_floor", "fidelity (N=256)"),
    ("control_camera_deg", "control_floor_camera_deg", "camera (deg)"),
    ("control_head_pose_deg", "control_floor_head_pose_deg", "head pose (deg)"),
    ("control_shoulder_pose_deg", "control_floor_shoulder_pose_deg", "shoulder pose (deg)"),
    ("control_expression", "control_floor_expression", "expression (L1)"),
)


def read_evaluation(path: Path) -> dict:
    """An `aniportrait eval --json` report, or the first model's report in a `docs/estimator/baselines.py` file."""
    data = json.loads(path.read_text())
    return next(iter(data["models"].values()))["eval"] if "models" in data else data


def fit_curve(run: Path) -> list[tuple[int, float]]:
    rows = read_jsonl(run / "warmups.jsonl")
    return [(row["step"], row["loss"]) for row in rows if row["warmup"].startswith(RECONSTRUCTION)]


def running_mean(values: list[float], width: int) -> list[float]:
    return [sum(values[max(0, i - width + 1) : i + 1]) / (i + 1 - max(0, i - width + 1)) for i in range(len(values))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", nargs="+", metavar="NAME=FOLDER")
    parser.add_argument("--heldout", action="append", default=[], metavar="NAME:RUN=FILE")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    recipes = dict(item.split("=", 1) for item in args.recipes)
    extra = {tuple(key.split(":", 1)): Path(file) for key, file in (item.split("=", 1) for item in args.heldout)}

    fig, grid = plt.subplots(2, 3, figsize=(14, 7.5))
    axes = list(grid.flat)
    for index, (name, folder) in enumerate(recipes.items()):
        colour, offset, points = f"C{index}", 0, []
        for run_name in RUNS:
            run = Path(folder) / run_name
            if not (run / "warmups.jsonl").exists():
                break
            curve = fit_curve(run)
            steps = [offset + step for step, _ in curve]
            label = name if run_name == RUNS[0] else None
            axes[0].plot(steps, running_mean([loss for _, loss in curve], WINDOW), lw=0.8, label=label, c=colour)
            offset = steps[-1] + 10 if steps else offset
            report = extra.get((name, run_name), run / "evaluation.json")
            if report.exists():
                points.append((offset, read_evaluation(report)))
        for ax, (key, floor_key, title) in zip(axes[1:], HELD_OUT):
            ax.plot([step for step, _ in points], [report[key] for _, report in points], "o-", c=colour, label=name)
            if points:
                ax.axhline(points[0][1][floor_key], ls="--", c="gray", lw=0.8)
            ax.set_title(f"held-out {title}")
    axes[0].set_title("reconstruction L1 (portrait + face; + window in s1e)")
    for ax in axes:
        ax.set_xlabel("reconstruction step (runs one after another)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
