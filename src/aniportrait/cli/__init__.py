"""The ``aniportrait`` command line (a click group), one module per command. Commands stay thin: parse, validate,
call the library.

Bad input (wrong shapes, NaN, missing or corrupt files, unknown options) ends with one line on stderr that says
what is wrong and what to do, exit code 2, no traceback and no partial output. Click's own usage errors are printed
on one line too (``_Group``), float options refuse NaN and infinity (``FiniteFloat``), and path options refuse an
empty string (``NonEmptyPath``): see :mod:`aniportrait.cli.common`.
"""

from __future__ import annotations

import importlib.metadata

import click

from aniportrait.allocator import keep_freed_memory
from aniportrait.cli import convert, data, evaluate, export_mesh, info, render, train, view
from aniportrait.cli.common import InputError, _Group, _input_errors

__all__ = ["InputError", "_input_errors", "main"]


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(importlib.metadata.version("aniportrait"), prog_name="aniportrait")
def main() -> None:
    """AniPortraitGAN: animatable 3D-aware head-and-shoulder portraits on fused Triton kernels."""
    keep_freed_memory()  # frames and training steps reuse freed memory instead of faulting it in again


for command in (
    info.info,
    render.render,
    export_mesh.export_mesh_command,
    convert.convert_official_command,
    data.data,
    train.train,
    evaluate.eval_command,
    view.view_command,
):
    main.add_command(command)
