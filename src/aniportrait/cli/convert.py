"""`aniportrait convert-official`: the authors' checkpoint to ours."""

from __future__ import annotations

import click

from aniportrait.cli.common import (
    InputError,
    NonEmptyPath,
    _check_output_file,
    _input_errors,
    _same_file,
)


@click.command("convert-official")
@click.argument("checkpoint", type=NonEmptyPath(dir_okay=False))
@click.option("--knn-index", required=True, type=NonEmptyPath(dir_okay=False), help="valid_smpl_knn_index.npy")
@click.option("-o", "--out", "out_path", required=True, type=NonEmptyPath(dir_okay=False), help="Output .safetensors.")
@click.option(
    "--smpl-out",
    type=NonEmptyPath(dir_okay=False),
    help="Also write the embedded SMPL body (.npz, plain numpy, no chumpy): what --smpl takes.",
)
@click.option(
    "--id-bank",
    type=NonEmptyPath(dir_okay=False),
    help="The release's sampler_npy/id_shape_sampler_body.npy ([N, 90]): identities and body shapes are then drawn "
    "from it, as the release does, instead of from N(0, I) with betas 0.",
)
def convert_official_command(checkpoint, knn_index, out_path, smpl_out, id_bank) -> None:
    """Convert the authors' sshq512.pt (read with weights_only=True) to an aniportrait safetensors checkpoint."""
    from aniportrait.convert import convert_official

    outputs = [("-o", out_path)] + ([("--smpl-out", smpl_out)] if smpl_out else [])
    if smpl_out and _same_file(out_path, smpl_out):
        raise InputError(f"-o and --smpl-out are the same file ({out_path}); give two different paths")
    for option, path in outputs:
        for source in (checkpoint, knn_index) + ((id_bank,) if id_bank else ()):
            if _same_file(path, source):
                raise InputError(f"{option} {path} would overwrite the input {source}; choose another output path")
        _check_output_file(path, option)
    try:
        counts = convert_official(checkpoint, knn_index, out_path, smpl_out=smpl_out, id_bank=id_bank)
    except _input_errors() as err:
        raise InputError(str(err)) from None
    click.echo(
        f"wrote {out_path}: {counts['network']} network tensors; checked and dropped {counts['duplicates']} duplicated "
        f"smoother and {counts['smpl_buffers']} SMPL buffers"
        + (f" (SMPL arrays written to {smpl_out})" if smpl_out else "")
        + (f"; identity bank of {counts['id_bank_rows']:,} rows stored" if id_bank else "")
    )
