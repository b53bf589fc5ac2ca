"""`aniportrait info`: versions and the op implementation `auto` picks here."""

from __future__ import annotations

import importlib.metadata
import os
import platform

import click

from aniportrait.cli.common import (
    InputError,
)


@click.command()
def info() -> None:
    """Print versions and which op implementation `auto` would pick on this machine (honouring ANIPORTRAIT_IMPL);
    exit code 2 when ANIPORTRAIT_IMPL is unknown or cannot run here."""
    import torch

    from aniportrait.kernels._registry import ENV_VAR, env_impl, resolve_impl
    from aniportrait.kernels._triton import HAS_TRITON

    triton_version = importlib.metadata.version("triton") if HAS_TRITON else "not installed"
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    problem = None
    try:
        forced = env_impl()
        auto = resolve_impl("info", "auto", torch.empty(0, device=device))
        auto += f" (set by {ENV_VAR})" if forced else f" on {device} tensors (override with {ENV_VAR}=ref|triton)"
    except ValueError as err:  # an unknown value
        problem, auto = str(err), f"none ({ENV_VAR} is unknown, see the error below)"
    except RuntimeError as err:  # triton forced where it cannot run
        problem = f"${ENV_VAR}={os.environ.get(ENV_VAR)}: {str(err).removeprefix('info: ')}"
        auto = f"none ({ENV_VAR} cannot run here, see the error below)"
    click.echo(f"aniportrait {importlib.metadata.version('aniportrait')}")
    click.echo(f"python      {platform.python_version()}")
    click.echo(f"torch       {torch.__version__}")
    click.echo(f"triton      {triton_version}")
    click.echo(f"cuda device {cuda}")
    click.echo(f"auto impl   {auto}")
    if problem:
        raise InputError(problem)
