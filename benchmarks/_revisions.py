"""Running one snippet against several source trees: what the side-by-side CPU benchmarks share.

Each tree (this checkout, or a git worktree of an older revision) runs the snippet in its own subprocess with
``PYTHONPATH=<tree>/src`` and ``OMP_NUM_THREADS`` set; the snippet prints its result as JSON on its last line.
:func:`frame_error` compares the frames the trees render.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np


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


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two frames on [-1, 1], measured on the [0, 1] scale (infinity when identical)."""
    mse = float(np.mean(((a.astype(np.float64) - b) / 2) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def frame_error(frame: np.ndarray, reference: np.ndarray) -> dict:
    """A frame on [-1, 1] against a reference: PSNR and the largest difference in uint8 levels."""
    levels = np.abs(np.round((frame + 1) * 127.5) - np.round((reference + 1) * 127.5))
    return {"psnr_db": round(psnr(frame, reference), 2), "max_uint8_levels": int(levels.max())}
