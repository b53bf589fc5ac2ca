"""CPU time of one ``small`` training step: this tree against another revision, side by side in one run.

Each revision runs in its own subprocess (``PYTHONPATH=<tree>/src``) with its own ``small`` preset and warm-ups
off, builds a Trainer on the same dataset, takes ``--warm`` steps, then times ``--steps`` steps; the revisions
alternate for ``--rounds`` rounds so that a busy machine slows both alike. The median step time of each revision
and their ratio go to a JSON file with the machine, the thread count and the revisions.

Usage:
    git worktree add /tmp/aniportrait-base df3677a
    python benchmarks/cpu_train_step.py DATA --base /tmp/aniportrait-base --threads 1 \\
        --json benchmarks/results/cpu-train-step-<machine>.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
from pathlib import Path

from _revisions import revision, run_snippet  # benchmarks/ is on the path when this script runs

from aniportrait.machine import cpu_name

HERE = Path(__file__).resolve().parents[1]

# Runs inside the subprocess: old revisions have Trainer.d_step/g_step, new ones Trainer.train_step.
SNIPPET = r"""
import json, sys, tempfile, time, torch
torch.set_num_threads(int(sys.argv[2]))
from aniportrait.train.config import PRESETS
from aniportrait.train.loop import Trainer
fields = PRESETS["small"].__dataclass_fields__
off = [f"{k}=0" for k in ("shape_prior_steps", "deform_prior_steps", "sr_prior_steps", "snapshot_metrics") if k in fields]
config = PRESETS["small"].with_overrides(off)
trainer = Trainer(config, sys.argv[1], tempfile.mkdtemp(), progress=False)
def step(s):
    if hasattr(trainer, "train_step"):
        trainer.train_step(s)
    else:
        trainer.d_step(s); trainer.g_step(s)
warm, steps = int(sys.argv[3]), int(sys.argv[4])
for s in range(warm):
    step(s)
times = []
for s in range(warm, warm + steps):
    start = time.perf_counter(); step(s); times.append(time.perf_counter() - start)
print(json.dumps(times))
"""


def run(tree: Path, data: str, threads: int, warm: int, steps: int) -> list[float]:
    return run_snippet(tree, SNIPPET, [data, threads, warm, steps], threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="a dataset folder (aniportrait data synth ... --res 128)")
    parser.add_argument("--base", required=True, help="a worktree of the revision to compare against")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warm", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    trees = {"base": Path(args.base).resolve(), "new": HERE}
    times: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            times[name] += run(tree, args.data, args.threads, args.warm, args.steps)
    medians = {name: statistics.median(t) for name, t in times.items()}
    result = {
        "machine": platform.processor() or platform.machine(),
        "cpu": cpu_name(),
        "threads": args.threads,
        "revisions": {name: revision(tree) for name, tree in trees.items()},
        "note": "the new tree may hold uncommitted changes" if _dirty(HERE) else "",
        "median_step_s": medians,
        "speedup": medians["base"] / medians["new"],
        "step_times_s": times,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "step_times_s"}, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


def _dirty(tree: Path) -> bool:
    status = subprocess.run(
        ["git", "-C", str(tree), "status", "--porcelain"], check=True, capture_output=True, text=True
    ).stdout
    return bool(status.strip())


if __name__ == "__main__":
    main()
