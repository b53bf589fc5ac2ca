"""Helpers shared by test files in more than one folder: tiny generators, the release's SMPL buffer layout,
`aniportrait render` through click, and the CLI's bad-input contract."""

import os

import torch
from click.testing import CliRunner

from aniportrait.cli import main
from aniportrait.config import TINY
from aniportrait.models.generator import AniPortraitGenerator, init_planar_manifolds

# -- generators ----------------------------------------------------------------------------------------------------


def tiny_generator(seed: int = 0) -> AniPortraitGenerator:
    """A tiny generator with every tensor random (checkpoint and conversion round trips)."""
    torch.manual_seed(seed)
    generator = AniPortraitGenerator(TINY)
    with torch.no_grad():  # every tensor random, so that a bitwise comparison means something
        for p in generator.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    return generator.eval()


def tiny_default() -> AniPortraitGenerator:
    """The deterministic tiny generator (seed 0, planar manifolds) that stands in for the built-in default; the
    global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        generator = AniPortraitGenerator(TINY)
    init_planar_manifolds(generator)
    return generator.eval()


# -- the release checkpoint ----------------------------------------------------------------------------------------

# Buffers of smplx's SMPLLayer = the release checkpoint's renderer.smpl_model.* keys (sshq512.pt), with dtypes.
RELEASE_SMPL_BUFFERS = {
    "shapedirs": ((6890, 3, 10), torch.float32),
    "faces_tensor": ((13776, 3), torch.int64),
    "v_template": ((6890, 3), torch.float32),
    "J_regressor": ((24, 6890), torch.float32),
    "posedirs": ((207, 20670), torch.float32),
    "parents": ((24,), torch.int64),
    "lbs_weights": ((6890, 24), torch.float32),
    "vertex_joint_selector.extra_joints_idxs": ((21,), torch.int64),
}


# -- `aniportrait render` ------------------------------------------------------------------------------------------


def render(*args: str):
    """`aniportrait render --device cpu ARGS`, invoked through click."""
    return CliRunner().invoke(main, ["render", "--device", "cpu", *args])


def listing(folder) -> set[str]:
    """Every file and folder below ``folder`` (relative), hidden ones included; empty if it does not exist."""
    if not os.path.exists(folder):
        return set()
    found = set()
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            found.add(os.path.relpath(os.path.join(root, name), folder))
    return found


# -- the CLI's bad-input contract ----------------------------------------------------------------------------------


def error_line(result, *fragments: str) -> str:
    """Assert the bad-input contract (exit code 2, no traceback, one stderr line starting with 'Error: ' that holds
    every fragment) on a click result; returns that line."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]
