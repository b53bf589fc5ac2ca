"""Wall time of the README's main job, `aniportrait render --out DIR`, for this tree and another revision.

The whole command as a user runs it after the install (start-up, the built-in default's identity, the demo
trajectory's 136 frames, the three videos), each revision in its own process with ``PYTHONPATH=<tree>/src`` and
its own packaged default. The revisions alternate for ``--rounds`` rounds so that a busy machine slows both alike;
the JSON records every round's seconds, the medians, the machine and the thread count (``OMP_NUM_THREADS`` as
given, else the command's own default).

Usage:
    git worktree add /tmp/aniportrait-base REV
    python benchmarks/cpu_readme_command_time.py --base /tmp/aniportrait-base \\
        --json benchmarks/results/cpu-readme-command-<machine>.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _revisions import revision  # benchmarks/ is on the path when this script runs

from aniportrait.machine import cpu_name

HERE = Path(__file__).resolve().parents[1]


def seconds(tree: Path) -> float:
    """One run of `aniportrait render --out` with ``tree``'s package, in a fresh output folder."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "aniportrait", "render", "--out", out, "--quiet"], env=env, check=True)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="a worktree of the revision to compare against")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--note", default="", help="a remark stored with the result (e.g. what else ran)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    trees = {"base": Path(args.base).resolve(), "new": HERE}
    rounds: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            rounds[name].append(seconds(tree))
    result = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "command": "aniportrait render --out DIR",
        "revisions": {name: revision(tree) for name, tree in trees.items()},
        "median_seconds": {name: statistics.median(values) for name, values in rounds.items()},
        "seconds_per_round": rounds,
        "note": args.note,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
