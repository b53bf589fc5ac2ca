"""Seconds per identity (manifold super-resolution) of the ``sshq512`` config on CPU: this tree against another
revision, side by side in one run, with the frame error of each fast path.

Each revision runs in its own subprocess (``PYTHONPATH=<tree>/src``) on the same random ``sshq512`` weights (seed 0,
planar manifolds, so that the rays hit) and prepares the identities of seeds 0 and 1 at psi 0.7, timing each
(``first`` and ``second``: work that needs no identity may be cached by the first): the base revision in fp32, this
tree in fp32 with the C allocator's default policy, and this tree as the ``aniportrait`` command runs (freed memory
kept, :mod:`aniportrait.allocator`) in fp32 and with ``sr_precision="bf16"``. Each then renders one 512x512 frame
from seed 0's identity in fp32 (a yawed camera, a nodded head) and saves it, and the script reports each frame's
PSNR against the base's (on the [0, 1] scale; identical frames give infinity). The runs alternate for ``--rounds``
rounds so that a busy machine slows them alike; the JSON records each round, the medians, the speed-ups, the
machine (and its bf16 path), the thread count and the revisions.

Usage:
    git worktree add /tmp/aniportrait-base df3677a
    python benchmarks/cpu_identity_time.py --base /tmp/aniportrait-base --threads 1 \\
        --json benchmarks/results/cpu-identity-time-<machine>.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np
from _revisions import frame_error, revision, run_snippet  # benchmarks/ is on the path when this script runs

from aniportrait.machine import bf16_matmul_path, cpu_name

HERE = Path(__file__).resolve().parents[1]

# Runs inside the subprocess with the revision's own package (the API below exists in every revision compared;
# sr_precision only in this tree's, and only the "bf16" mode passes it).
SNIPPET = r"""
import json, math, sys, time, numpy as np, torch
torch.set_num_threads(int(sys.argv[1]))
mode, out, keep = sys.argv[2], sys.argv[3], sys.argv[4]
if keep == "keep":
    from aniportrait.allocator import keep_freed_memory
    assert keep_freed_memory()
from aniportrait.config import SSHQ512
from aniportrait.models.body import BodyModel
from aniportrait.models.generator import AniPortraitGenerator, init_planar_manifolds, sample_identity_latents
torch.manual_seed(0)
G = AniPortraitGenerator(SSHQ512).eval()
init_planar_manifolds(G)
body = BodyModel.procedural()
latents = [sample_identity_latents(SSHQ512, [seed]) for seed in (0, 1)]
extra = {} if mode == "fp32" else {"sr_precision": mode}
camera = torch.tensor([[math.pi / 2, math.pi / 2 + 0.2]])
pose = torch.zeros(1, 6, 3)
pose[0, 3, 2] = 0.1
seconds = []
with torch.no_grad():
    for seed_latents in latents:
        start = time.perf_counter()
        identity = G.prepare_identity(*seed_latents, psi=0.7, impl="ref", **extra)
        seconds.append(time.perf_counter() - start)
        if len(seconds) == 1:
            frame = G.render_frame(identity, body, camera, pose, torch.zeros(1, 64), impl="ref")["image"]
np.save(out, frame[0].numpy())
print(json.dumps({"first": seconds[0], "second": seconds[1]}))
"""

# (tree, sr precision, allocator policy); "keep" as the aniportrait command runs (aniportrait.allocator).
RUNS = (("base", "fp32", "system"), ("new", "fp32", "system"), ("new", "fp32", "keep"), ("new", "bf16", "keep"))


def run_key(tree: str, mode: str, keep: str) -> str:
    """A run's name in the JSON: ``new_fp32``, ``new_fp32_keep``, ..."""
    return f"{tree}_{mode}" + ("_keep" if keep == "keep" else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="a git worktree of the revision to compare with")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    trees = {"base": args.base, "new": HERE}
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            record = {}
            for tree, mode, keep in RUNS:
                key = run_key(tree, mode, keep)
                out = Path(tmp) / f"{key}_{i}.npy"
                times = run_snippet(trees[tree], SNIPPET, [args.threads, mode, out, keep], args.threads)
                for which in ("first", "second"):
                    record[f"{key}_{which}"] = round(times[which], 2)
                print(f"round {i}: {key} {times['first']:.2f} s, then {times['second']:.2f} s", flush=True)
            rounds.append(record)
        reference = np.load(Path(tmp) / "base_fp32_0.npy")
        errors = {}
        for run in RUNS[1:]:
            key = run_key(*run)
            errors[key] = frame_error(np.load(Path(tmp) / f"{key}_0.npy"), reference)
    medians = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    result = {
        "what": "seconds per sshq512 identity (manifold super-resolution), random weights, planar manifolds, psi 0.7",
        "cpu": cpu_name(),
        "bf16_path": bf16_matmul_path(),
        "threads": args.threads,
        "revisions": {"base": revision(args.base), "new": revision(HERE)},
        "rounds": rounds,
        "median_s": medians,
        "speedup_vs_base": {
            k: round(medians[f"base_fp32_{'first' if k.endswith('first') else 'second'}"] / v, 2)
            for k, v in medians.items()
            if not k.startswith("base")
        },
        "frame_error_vs_base_fp32": errors,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
