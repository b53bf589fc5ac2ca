"""What the commands share: the input-error exception (exit code 2), option types, option decorators declared
once, device and implementation checks, and model loading."""

from __future__ import annotations

import contextlib
import math
import os

import click

IMPL_CHOICE = click.Choice(["auto", "ref", "triton"])


class InputError(click.ClickException):
    """Bad user input: printed as ``Error: <message>`` on one line (line breaks become spaces), exit code 2."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(line.strip() for line in message.strip().splitlines()))


class FiniteFloat(click.FloatRange):
    """A float option that refuses NaN and infinity, then checks the optional bounds of ``click.FloatRange``."""

    name = "finite float"

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)


class NonEmptyPath(click.Path):
    """``click.Path`` that refuses an empty string (which would otherwise mean the current folder)."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.strip():
            self.fail("the path is empty; give a file or folder name", param, ctx)
        return super().convert(value, param, ctx)


@contextlib.contextmanager
def _one_line_usage_errors():
    """Turn click's usage errors (unknown option, bad value, missing argument) into one 'Error:' line."""
    try:
        yield
    except click.exceptions.NoArgsIsHelpError:
        raise
    except click.UsageError as err:
        where = f" (see '{err.ctx.command_path} --help')" if err.ctx is not None else ""
        raise InputError(err.format_message() + where) from None


class _Group(click.Group):
    """The root group: every usage error of every command prints one line instead of click's usage block."""

    def make_context(self, info_name, args, parent=None, **extra):
        with _one_line_usage_errors():
            return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx):
        with _one_line_usage_errors():
            return super().invoke(ctx)


def _check_output_file(path: str, option: str) -> None:
    """Refuse an output file whose folder is missing, not a folder, or not writable (before any work is done)."""
    from aniportrait.userfiles import output_file_problem

    problem = output_file_problem(path)
    if problem:
        raise InputError(f"cannot write {option} {path}: {problem}")


def _check_output_folder(path: str, option: str) -> None:
    """Refuse an output folder that cannot be created or written (before any work is done)."""
    from aniportrait.userfiles import output_folder_problem

    problem = output_folder_problem(path)
    if problem:
        raise InputError(f"cannot write to {option} {path}: {problem}")


def _input_errors():
    """Exception types that mean bad input rather than a bug: every module's error class derives from this base."""
    from aniportrait.errors import UserInputError

    return (UserInputError,)


def _resolve_device(device: str) -> str:
    import torch

    from aniportrait.api import device_problem

    problem = device_problem(device)
    if problem is not None:
        raise InputError(f"--device {device}: {problem.replace('use cpu', 'use --device cpu')}")
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def _check_impl(impl: str, device: str) -> None:
    """Fail before rendering when ``--impl`` cannot run on ``device`` (e.g. triton on CPU)."""
    import torch

    from aniportrait.kernels._registry import ENV_VAR, resolve_impl

    try:
        resolve_impl("render", impl, torch.empty(0, device=device))
    except ValueError as err:  # an unknown $ANIPORTRAIT_IMPL
        raise InputError(str(err)) from None
    except RuntimeError as err:
        source = f"--impl {impl}" if impl != "auto" else f"${ENV_VAR}={os.environ.get(ENV_VAR)}"
        raise InputError(f"{source}: {str(err).removeprefix('render: ')}") from None


def _stack(*decorators):
    """One decorator applying ``decorators`` in order (the first is the outermost: listed first in --help)."""

    def apply(f):
        for decorator in reversed(decorators):
            f = decorator(f)
        return f

    return apply


# Options shared by several commands, declared once.
model_options = _stack(
    click.option(
        "--checkpoint", type=NonEmptyPath(dir_okay=False), help="Our .safetensors checkpoint (default: built-in)."
    ),
    click.option("--smpl", type=NonEmptyPath(dir_okay=False), help="SMPL_NEUTRAL.pkl/.npz for SMPL checkpoints."),
)
keyframe_file_options = _stack(
    click.option(
        "--expression",
        type=NonEmptyPath(dir_okay=False),
        help="Expression keyframes [N, 64] (.npy), each coefficient in [-10, 10].",
    ),
    click.option(
        "--pose",
        type=NonEmptyPath(dir_okay=False),
        help="Pose keyframes [N, 6, 3] (.npy), ZYX Euler offsets in radians within [-pi, pi].",
    ),
    click.option(
        "--camera",
        type=NonEmptyPath(dir_okay=False),
        help="Camera keyframes [N, 2] = (pitch, yaw) in radians (.npy): pitch in (0, pi), yaw in [pi/2 - pi, pi/2 + pi].",
    ),
)
# Rendering settings default to the checkpoint's (aniportrait.config.RenderingConfig; 0.7, 8, 25 and fp32 where it
# records none, as for the built-in default).
CHECKPOINT_DEFAULT = "  [default: the checkpoint's, else {}]"
psi_option = click.option(
    "--psi", default=None, type=FiniteFloat(0.0, 1.0), help="Truncation." + CHECKPOINT_DEFAULT.format(0.7)
)
device_options = _stack(
    click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
    click.option("--impl", default="auto", show_default=True, type=IMPL_CHOICE, help="Kernel implementation."),
)


def _same_file(a: str, b: str) -> bool:
    """Whether two paths name the same file (following links; also for files that do not exist yet)."""
    return os.path.realpath(a) == os.path.realpath(b)


def _load_model(checkpoint, smpl, device):
    """The :class:`aniportrait.api.Portrait` of ``--checkpoint`` (None: the built-in default)."""
    from aniportrait.api import load

    return load(checkpoint, smpl, device)
