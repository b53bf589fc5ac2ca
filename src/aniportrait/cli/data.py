"""`aniportrait data check|synth`: validate a dataset, or write the synthetic one."""

from __future__ import annotations

import click

from aniportrait.cli.common import (
    InputError,
    NonEmptyPath,
)


@click.group()
def data() -> None:
    """Datasets: validate one, or write the synthetic dataset."""


@data.command("check")
@click.argument("dataset", type=NonEmptyPath(exists=True, file_okay=False))
@click.option("--no-decode", is_flag=True, help="Check headers and sizes only (faster).")
def data_check(dataset, no_decode) -> None:
    """Validate DATASET (the format of aniportrait.data.format); exit 1 if any entry is missing, corrupt or
    mis-shaped, exit 2 if DATASET is not an existing folder."""
    from aniportrait.data.dataset import check_dataset

    report = check_dataset(dataset, decode=not no_decode)
    click.echo(report.summary())
    if not report.ok:
        raise click.exceptions.Exit(1)


@data.command("synth")
@click.argument("out", type=NonEmptyPath(file_okay=False))
@click.option("--n", "count", default=1000, show_default=True, type=click.IntRange(1, 1_000_000), help="Images.")
@click.option("--res", default=128, show_default=True, type=click.IntRange(16, 2048), help="Portrait side.")
@click.option("--face-res", default=None, type=click.IntRange(16, 2048), help="Face-crop side [default: res/2].")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**32 - 1))
@click.option("--quiet", is_flag=True, help="No progress bar.")
def data_synth(out, count, res, face_res, seed, quiet) -> None:
    """Write a synthetic head-and-shoulders dataset (procedural rig, random identity, camera, pose, expression)."""
    from aniportrait.data.synth import synthesize

    try:
        path = synthesize(out, count, res=res, face_res=face_res, seed=seed, progress=not quiet)
    except ValueError as err:
        raise InputError(str(err)) from None
    click.echo(f"wrote {count} images to {path}")
