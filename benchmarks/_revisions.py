"""Running one snippet against several source trees: what the side-by-side CPU benchmarks share.

Each tree (this checkout, or a git worktree of an older revision) runs the snippet in its own subprocess with
``PYTHONPATH=<tree>/src`` and ``OMP_NUM_THREADS`` set; the snippet prints its result as JSON on its last line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def run_snippet(tree: Path, snippet: str, args: list, threads: int):
    """``python -c snippet *args`` with ``tree``'s package; returns the JSON of its last stdout line."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run(
        [sys.executable, "-c", snippet, *map(str, args)], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def revision(tree: Path) -> str:
    """The tree's short commit hash."""
    return subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
