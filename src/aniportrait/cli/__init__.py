"""The ``aniportrait`` command line (a click group). Commands stay thin: parse, validate, call the library."""

from __future__ import annotations

import importlib.metadata
import platform

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(importlib.metadata.version("aniportrait"), prog_name="aniportrait")
def main() -> None:
    """AniPortraitGAN: animatable 3D-aware head-and-shoulder portraits on fused Triton kernels."""


@main.command()
def info() -> None:
    """Print versions and which op implementation `auto` would pick on this machine."""
    import torch

    from aniportrait.kernels._registry import interpreter_enabled
    from aniportrait.kernels._triton import HAS_TRITON

    triton_version = importlib.metadata.version("triton") if HAS_TRITON else "not installed"
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    auto = "triton" if (torch.cuda.is_available() and HAS_TRITON and not interpreter_enabled()) else "ref"
    click.echo(f"aniportrait {importlib.metadata.version('aniportrait')}")
    click.echo(f"python      {platform.python_version()}")
    click.echo(f"torch       {torch.__version__}")
    click.echo(f"triton      {triton_version}")
    click.echo(f"cuda device {cuda}")
    click.echo(f"auto impl   {auto} (override with ANIPORTRAIT_IMPL=ref|triton)")


if __name__ == "__main__":  # pragma: no cover
    main()
