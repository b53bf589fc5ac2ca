"""`aniportrait export-mesh`: a portrait as a coloured triangle mesh."""

from __future__ import annotations

import os

import click

from aniportrait.cli.common import (
    InputError,
    NonEmptyPath,
    _check_impl,
    _check_output_file,
    _input_errors,
    _resolve_device,
    device_options,
    keyframe_file_options,
    model_options,
    psi_option,
)


@click.command("export-mesh")
@model_options
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**32 - 1), help="Identity seed.")
@psi_option
@keyframe_file_options
@click.option(
    "--keyframe",
    default=0,
    show_default=True,
    type=click.IntRange(0, None),
    help="Which row of the keyframe files to export.",
)
@device_options
@click.option("-o", "--out", "out_path", required=True, type=NonEmptyPath(dir_okay=False), help=".glb, .ply or .obj")
def export_mesh_command(checkpoint, smpl, seed, psi, expression, pose, camera, keyframe, device, impl, out_path):
    """Export the portrait of one seed, posed and expressed, as a vertex-coloured triangle mesh (GLB, PLY or OBJ).

    The mesh is the surface the frame shows from its camera (default: frontal, rest pose, neutral expression), one
    vertex per opaque pixel with the rendered colour, in metres with y up and the frontal camera on +z. Needs
    trimesh: pip install "aniportrait[mesh]"."""
    import importlib.util

    from aniportrait.render import keyframes as kf
    from aniportrait.render.mesh import MESH_FORMATS

    try:
        if os.path.splitext(out_path)[1].lower() not in MESH_FORMATS:
            raise InputError(f"-o {out_path}: unknown mesh format; use a name ending in {', '.join(MESH_FORMATS)}")
        if importlib.util.find_spec("trimesh") is None:
            raise InputError('export-mesh needs trimesh: pip install "aniportrait[mesh]"')
        _check_output_file(out_path, "-o")
        keys = kf.from_files(expression, pose, camera) if (expression or pose or camera) else kf.neutral(1)
        if keyframe >= len(keys):
            raise InputError(f"--keyframe {keyframe}: the keyframes have {len(keys)} rows (0 to {len(keys) - 1})")
        device = _resolve_device(device)
        _check_impl(impl, device)
        from aniportrait.api import load

        portrait = load(checkpoint, smpl, device, impl)
    except _input_errors() as err:
        raise InputError(str(err)) from None
    import torch

    from aniportrait.render.mesh import portrait_mesh, write_mesh

    person = portrait.identity(seed, psi)
    controls = [
        torch.from_numpy(getattr(keys, k)[keyframe : keyframe + 1]).to(device) for k in ("camera", "pose", "expression")
    ]
    vertices, faces, colors = portrait_mesh(portrait.generator, portrait.body, person.cache, *controls, impl=impl)
    write_mesh(out_path, vertices, faces, colors)
    click.echo(f"wrote {out_path}: {len(vertices):,} vertices, {len(faces):,} triangles (metres, y up)")
