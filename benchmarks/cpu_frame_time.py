"""Seconds per 512x512 frame (identity cached) of the ``sshq512`` config on CPU: this tree against another revision,
side by side in one run, and the frame error of adaptive sampling and of ``bf16-deform``.

Each run is its own subprocess (``PYTHONPATH=<tree>/src``) on the same random ``sshq512`` weights (seed 0, planar
manifolds, so that every ray hits): it prepares seed 0's identity (not timed), renders one warm-up frame, then
times ``--frames`` frames (yaw -0.3, 0 and +0.3 rad from the front, head nodded), and saves the first. The runs are

- ``base_exact``: the base revision as it is;
- ``new_exact_system``: this tree, exact sampling, the C allocator's default policy;
- ``new_exact``: this tree, exact sampling, with :func:`aniportrait.allocator.keep_freed_memory` (as the
  ``aniportrait`` command runs);
- ``new_adaptive``: the same with ``sampling="adaptive"``;
- ``new_adaptive_bf16_deform``: the same with ``precision="bf16-deform"`` (DeformNet under bfloat16, the scalar
  field in fp32).

They alternate for ``--rounds`` rounds so that a busy machine slows them alike. The JSON records each round's
median frame time, the medians over rounds, the speed-ups against the base, and each run's first frame against
the base's (PSNR on the [0, 1] scale, inf when identical, and the largest uint8 difference). DeformNet's final layer
is zero at initialisation, so these frames have no expression displacement and ``bf16-deform`` has nothing to
round there. It then measures the fast paths against exact fp32 in this tree, in one process: adaptive sampling,
``bf16-deform`` and both, on the planar model (three views; the fraction of intersections that differ, of field
evaluations made, and the frames' PSNR) as initialised and with DeformNet's final layer drawn at random for an RMS
displacement of about 1 mm and 1 cm everywhere (:data:`DEFORM_STDS`; bfloat16 rounds the displacement by a few
percent of itself, so its error grows with it), and on the built-in trained default (8 seeds, 4 views with
expression, head and shoulder changes). Also recorded: the machine, its bf16 path, the thread count and the
revisions.

Usage:
    git worktree add /tmp/aniportrait-base df3677a
    python benchmarks/cpu_frame_time.py --base /tmp/aniportrait-base --threads 2 \\
        --json benchmarks/results/cpu-frame-time-<machine>.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from _revisions import frame_error, revision, run_snippet  # benchmarks/ is on the path when this script runs

from aniportrait.machine import bf16_matmul_path, cpu_name

HERE = Path(__file__).resolve().parents[1]

# Runs inside the subprocess with the revision's own package; the allocator and sampling arguments only in this
# tree's runs.
SNIPPET = r"""
import json, math, statistics, sys, time, numpy as np, torch
threads, frames, out, keep, sampling, precision = int(sys.argv[1]), int(sys.argv[2]), *sys.argv[3:7]
torch.set_num_threads(threads)
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
extra = {} if sampling == "-" else {"sampling": sampling, "precision": precision}
pose = torch.zeros(1, 6, 3)
pose[0, 3, 2] = 0.1
cameras = [torch.tensor([[math.pi / 2, math.pi / 2 + yaw]]) for yaw in (-0.3, 0.0, 0.3)]
seconds = []
with torch.no_grad():
    identity = G.prepare_identity(*sample_identity_latents(SSHQ512, [0]), psi=0.7, impl="ref")
    G.render_frame(identity, body, cameras[1], pose, torch.zeros(1, 64), impl="ref", **extra)
    for i in range(frames):
        start = time.perf_counter()
        image = G.render_frame(identity, body, cameras[i % 3], pose, torch.zeros(1, 64), impl="ref", **extra)["image"]
        seconds.append(time.perf_counter() - start)
        if i == 0:
            np.save(out, image[0].numpy())
print(json.dumps({"median": statistics.median(seconds), "all": seconds}))
"""

# (name, tree, allocator policy, sampling and precision arguments)
RUNS = (
    ("base_exact", "base", "system", "-", "-"),
    ("new_exact_system", "new", "system", "exact", "fp32"),
    ("new_exact", "new", "keep", "exact", "fp32"),
    ("new_adaptive", "new", "keep", "adaptive", "fp32"),
    ("new_adaptive_bf16_deform", "new", "keep", "adaptive", "bf16-deform"),
)
# The fast paths measured against exact fp32: (sampling, precision)
FAST_PATHS = {
    "adaptive": ("adaptive", "fp32"),
    "bf16_deform": ("exact", "bf16-deform"),
    "adaptive_bf16_deform": ("adaptive", "bf16-deform"),
}
# The planar model's DeformNet final layer: zero (its initialisation: no displacement), then drawn at random for an
# RMS displacement of about 1 mm and 1 cm at every sample (the built-in default's RMS is about 1 mm, measured in
# the same JSON).
DEFORM_STDS = {"planar": 0.0, "planar_deform_1mm": 1.3e-4, "planar_deform_1cm": 1.3e-3}


def _frame(generator, body, identity, view, sampling: str, precision: str) -> tuple[dict, np.ndarray]:
    """One view's intersections and 512x512 frame."""
    found, _ = generator._frame_intersections(identity, body, *view, "ref", precision, sampling)
    image = generator.render_frame(identity, body, *view, impl="ref", sampling=sampling, precision=precision)
    return found, image["image"].numpy()


def fast_path_error() -> dict:
    """Adaptive sampling and bf16-deform against exact fp32 in this tree: the planar sshq512 model and the default."""
    from aniportrait.config import SSHQ512
    from aniportrait.models.body import BodyModel
    from aniportrait.models.generator import AniPortraitGenerator, init_planar_manifolds, sample_identity_latents
    from aniportrait.pretrained import body_for_checkpoint, builtin_generator

    def compare(generator, body, identity, views) -> list[dict]:
        records = []
        for view in views:
            exact, image_e = _frame(generator, body, identity, view, "exact", "fp32")
            record = {"displacement_rms": round(float(exact["d"].square().mean().sqrt()), 5)}
            for name, (sampling, precision) in FAST_PATHS.items():
                fast, image_f = _frame(generator, body, identity, view, sampling, precision)
                differ = ((fast["hits"] - exact["hits"]).abs().amax(-1) > 0) | (fast["valid"] != exact["valid"])
                record[name] = {
                    "intersections_differing": float(differ.float().mean()),
                    "field_evaluations": round(float(fast["evaluated"].float().mean()), 4),
                    **frame_error(image_f, image_e),
                }
            records.append(record)
        return records

    result = {}
    with torch.no_grad():
        torch.manual_seed(0)
        planar = AniPortraitGenerator(SSHQ512).eval()
        init_planar_manifolds(planar)
        body = BodyModel.procedural()
        identity = planar.prepare_identity(*sample_identity_latents(SSHQ512, [0]), psi=0.7, impl="ref")
        views = []
        for yaw, joint, angle in ((-0.3, 3, 0.1), (0.0, 4, 0.4), (0.3, 3, -0.2)):
            pose = torch.zeros(1, 6, 3)
            pose[0, joint, 2] = angle
            expression = torch.randn(1, 64, generator=torch.Generator().manual_seed(1))
            views.append((torch.tensor([[math.pi / 2, math.pi / 2 + yaw]]), pose, expression))
        for name, std in DEFORM_STDS.items():
            torch.nn.init.normal_(planar.deform_net.final_layer.weight, std=std)
            result[f"sshq512_{name}"] = compare(planar, body, identity, views)

        generator, metadata, valid_index = builtin_generator()
        body = body_for_checkpoint(metadata, valid_index, None)
        seeds = list(range(8))
        identity = generator.prepare_identity(*sample_identity_latents(generator.config, seeds), psi=0.7, impl="ref")
        views = []
        # (yaw, joint turned by 0.3 rad or None, expression coefficient set to 3 or None)
        for yaw, joint, coefficient in ((0.0, None, None), (0.5, 3, None), (-0.4, None, 0), (0.2, 1, 1)):
            pose = torch.zeros(len(seeds), 6, 3)
            expression = torch.zeros(len(seeds), 64)
            if joint is not None:
                pose[:, joint, 1] = 0.3
            if coefficient is not None:
                expression[:, coefficient] = 3.0
            camera = torch.tensor([[math.pi / 2, math.pi / 2 + yaw]]).expand(len(seeds), 2)
            views.append((camera, pose, expression))
        result["builtin_default"] = compare(generator, body, identity, views)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="a git worktree of the revision to compare with")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    trees = {"base": args.base, "new": HERE}
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            record = {}
            for name, tree, keep, sampling, precision in RUNS:
                out = Path(tmp) / f"{name}_{i}.npy"
                times = run_snippet(
                    trees[tree], SNIPPET, [args.threads, args.frames, out, keep, sampling, precision], args.threads
                )
                record[name] = round(times["median"], 2)
                print(f"round {i}: {name} {times['median']:.2f} s per frame", flush=True)
            rounds.append(record)
        reference = np.load(Path(tmp) / "base_exact_0.npy")
        errors = {name: frame_error(np.load(Path(tmp) / f"{name}_0.npy"), reference) for name, *_ in RUNS[1:]}
    medians = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    torch.set_num_threads(args.threads)
    result = {
        "what": "seconds per 512x512 sshq512 frame, identity cached, random weights, planar manifolds",
        "cpu": cpu_name(),
        "bf16_path": bf16_matmul_path(),
        "threads": args.threads,
        "revisions": {"base": revision(args.base), "new": revision(HERE)},
        "rounds": rounds,
        "median_s": medians,
        "speedup_vs_base": {k: round(medians["base_exact"] / v, 2) for k, v in medians.items() if k != "base_exact"},
        "frame_error_vs_base": errors,
        "fast_paths_vs_exact": fast_path_error(),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
