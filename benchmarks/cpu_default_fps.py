"""Frames per second of the built-in default on CPU: this tree against another revision, side by side in one run.

Each revision runs in its own subprocess (``PYTHONPATH=<tree>/src``) with its own built-in default (the packaged
checkpoint that revision ships), prepares seed 0's identity once, and renders the frames of the built-in ``demo``
trajectory (yaw, head, shoulders, expression) one ``render_frame`` call per frame, as ``aniportrait render`` does,
at the model's output size (128x128 for ``small``) in fp32. Video encoding is not included. It also times the
preparation of seed 1's identity and then of seed 0's, whose frames it renders (``identity_seconds``: the second
reuses what the first cached that is not per identity, such as the truncation averages). The revisions
alternate for ``--rounds`` rounds so that a busy machine slows both alike; the JSON records each round's frames
per second, the medians, their ratio, the machine, the thread count and the revisions.

Usage:
    git worktree add /tmp/aniportrait-base df3677a
    python benchmarks/cpu_default_fps.py --base /tmp/aniportrait-base --threads 2 \\
        --json benchmarks/results/cpu-default-fps-<machine>.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from _revisions import revision, run_snippet  # benchmarks/ is on the path when this script runs

from aniportrait.machine import bf16_matmul_path, cpu_name

HERE = Path(__file__).resolve().parents[1]

# Runs inside the subprocess with the revision's own package (the API below exists in every revision compared).
SNIPPET = r"""
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
from aniportrait.pretrained import builtin_generator, body_for_checkpoint
from aniportrait.models.generator import sample_identity_latents
from aniportrait.render import keyframes as kf
G, metadata, valid_index = builtin_generator()
body = body_for_checkpoint(metadata, valid_index, None)
frames = kf.interpolate(kf.builtin("demo"), int(sys.argv[2]))
camera, pose, expression = (torch.as_tensor(getattr(frames, k)).float() for k in ("camera", "pose", "expression"))
limit = int(sys.argv[3])
with torch.no_grad():
    identity_seconds = []
    for seed in (1, 0):
        z_id, z_noise, betas = sample_identity_latents(G.config, [seed], id_bank=getattr(G, "id_bank", None))
        start = time.perf_counter()
        identity = G.prepare_identity(z_id, z_noise, betas)
        identity_seconds.append(time.perf_counter() - start)
    def render(i):
        return G.render_frame(identity, body, camera[i : i + 1], pose[i : i + 1], expression[i : i + 1])
    for i in range(3):
        render(i)
    n = min(limit, len(camera))
    start = time.perf_counter()
    for i in range(n):
        out = render(i)
    seconds = time.perf_counter() - start
print(json.dumps({"frames": n, "seconds": seconds, "size": list(out["image"].shape[-2:]), "identity": identity_seconds}))
"""


def run(tree: Path, threads: int, n_interval: int, frames: int) -> dict:
    return run_snippet(tree, SNIPPET, [threads, n_interval, frames], threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="a worktree of the revision to compare against")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=60, help="frames timed per round (after 3 untimed)")
    parser.add_argument("--n-interval", type=int, default=8, help="frames per keyframe of the demo trajectory")
    parser.add_argument("--note", default="", help="a remark stored with the result (e.g. what else ran)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    trees = {"base": Path(args.base).resolve(), "new": HERE}
    rounds: dict[str, list[dict]] = {name: [] for name in trees}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            rounds[name].append(run(tree, args.threads, args.n_interval, args.frames))
    fps = {name: [r["frames"] / r["seconds"] for r in runs] for name, runs in rounds.items()}
    medians = {name: statistics.median(values) for name, values in fps.items()}
    identity = {name: [r["identity"][1] for r in runs] for name, runs in rounds.items()}
    result = {
        "cpu": cpu_name(),
        "bf16_path": bf16_matmul_path(),
        "precision": "fp32",
        "threads": args.threads,
        "revisions": {name: revision(tree) for name, tree in trees.items()},
        "output_size": {name: runs[0]["size"] for name, runs in rounds.items()},
        "median_fps": medians,
        "speedup": medians["new"] / medians["base"],
        "median_identity_seconds": {name: statistics.median(values) for name, values in identity.items()},
        "fps_per_round": fps,
        "identity_seconds_per_round": {name: [r["identity"] for r in runs] for name, runs in rounds.items()},
        "note": args.note,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "fps_per_round"}, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
