"""`aniportrait render`: animated portrait videos from keyframes."""

from __future__ import annotations

import click

from aniportrait.cli.common import (
    CHECKPOINT_DEFAULT,
    InputError,
    NonEmptyPath,
    _check_impl,
    _check_output_folder,
    _input_errors,
    _load_model,
    _resolve_device,
    device_options,
    keyframe_file_options,
    model_options,
    psi_option,
)
from aniportrait.config import FRAME_PRECISIONS, MAX_FPS, MAX_N_INTERVAL, PRECISIONS, SAMPLINGS


@click.command()
@model_options
@click.option(
    "--seeds", default="0", show_default=True, metavar="LIST", help="Identity seeds, e.g. 0,1,4-6 (at most 100,000)."
)
@keyframe_file_options
@click.option(
    "--trajectory",
    type=click.Choice(["demo", "yaw", "expression", "head", "shoulder", "pose", "video"]),
    default=None,
    help="Built-in keyframes when no file is given  [default: demo].",
)
@click.option(
    "--n-interval",
    type=click.IntRange(1, MAX_N_INTERVAL),
    help="Frames per keyframe; a video has at most 100,000 frames (keyframes x n-interval)."
    + CHECKPOINT_DEFAULT.format(8),
)
@click.option("--fps", type=click.IntRange(1, MAX_FPS), help="Frame rate." + CHECKPOINT_DEFAULT.format(25))
@psi_option
@device_options
@click.option(
    "--precision",
    type=click.Choice(FRAME_PRECISIONS),
    help="Arithmetic of the per-frame MLPs: bf16-deform runs DeformNet in bfloat16 and keeps the scalar field in "
    "fp32 (it rounds the expression displacement by a few percent: within 67 dB of fp32 on the built-in default); "
    "bf16 runs both in bfloat16, faster still on CPUs with AVX512-BF16 and on GPUs, but it moves every intersection."
    + CHECKPOINT_DEFAULT.format("fp32"),
)
@click.option(
    "--sr-precision",
    type=click.Choice(PRECISIONS),
    help="Arithmetic of the per-identity super-resolution; bf16 is ~2x faster on CPUs with AVX512-BF16 and on GPUs "
    "(a model with field textures, such as the built-in default, has none)." + CHECKPOINT_DEFAULT.format("fp32"),
)
@click.option(
    "--sampling",
    type=click.Choice(SAMPLINGS),
    help="Where each frame evaluates the scalar field along a ray: at every fine sample (exact), or coarse to fine "
    "where a manifold's first crossing can be (adaptive: about 2.5x fewer evaluations in sshq512, the same frames "
    "unless the field has bumps narrower than the coarse grid)." + CHECKPOINT_DEFAULT.format("exact"),
)
@click.option("--png", is_flag=True, help="Also write PNG frames.")
@click.option(
    "--contact-sheet",
    "sheet_columns",
    default=0,
    type=click.IntRange(0, 64),
    metavar="N",
    help="Also write contact_sheet.png: a row per seed of N evenly spaced frames.",
)
@click.option("--out", "out_dir", required=True, type=NonEmptyPath(file_okay=False), help="Output folder.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def render(
    checkpoint,
    smpl,
    seeds,
    expression,
    pose,
    camera,
    trajectory,
    n_interval,
    fps,
    psi,
    device,
    impl,
    precision,
    sr_precision,
    sampling,
    png,
    sheet_columns,
    out_dir,
    quiet,
) -> None:
    """Render animated portrait videos (portrait, low-resolution and depth mp4 per seed) from keyframes.

    --psi, --n-interval, --fps, --precision, --sr-precision and --sampling default to the rendering settings the
    checkpoint records (a trained run's `rendering` config section). Keyframe values beyond the plausible ranges in
    the option help are refused, and so is a video of more than 100,000 frames or a contact sheet of more than 2**28
    pixels."""
    from aniportrait.render import keyframes as kf

    try:
        _check_output_folder(out_dir, "--out")
        seed_list = kf.parse_seeds(seeds)
        if trajectory is not None and (expression or pose or camera):
            raise InputError("give keyframe files or --trajectory, not both")
        if expression or pose or camera:
            keys = kf.from_files(expression, pose, camera)
        else:
            keys = kf.builtin(trajectory or "demo")
        if n_interval is not None:
            kf.check_frame_count(len(keys), n_interval)  # a bad frame count fails before the model loads
        device = _resolve_device(device)
        _check_impl(impl, device)
        portrait = _load_model(checkpoint, smpl, device)
        generator, body, defaults = portrait.generator, portrait.body, portrait.rendering
        frames = kf.interpolate(keys, defaults.n_interval if n_interval is None else n_interval)
        _check_contact_sheet(sheet_columns, len(seed_list), len(frames), generator.config.hr_img_size)
        from aniportrait.render.video import RenderSettings, check_writable, render_videos

        try:
            out = check_writable(out_dir)
        except OSError as err:
            raise InputError(f"cannot write to --out {out_dir}: {err.strerror or err}") from None
    except _input_errors() as err:
        raise InputError(str(err)) from None
    settings = RenderSettings(
        psi=defaults.psi if psi is None else psi,
        fps=defaults.fps if fps is None else fps,
        png=png,
        sheet_columns=sheet_columns,
        impl=impl,
        precision=defaults.precision if precision is None else precision,
        sr_precision=defaults.sr_precision if sr_precision is None else sr_precision,
        sampling=defaults.sampling if sampling is None else sampling,
        progress=not quiet,
    )
    written = render_videos(generator, body, seed_list, frames, out, settings)
    click.echo(f"wrote {len(frames)} frames per seed to {out}/: " + ", ".join(p.name for p in written))


MAX_SHEET_PIXELS = 2**28  # contact_sheet.png: about 0.8 GB of RGB in memory


def _check_contact_sheet(columns: int, seeds: int, frames: int, side: int) -> None:
    """Refuse a contact sheet (a row per seed of ``columns`` frames of ``side`` pixels) beyond ``MAX_SHEET_PIXELS``."""
    from aniportrait.render.video import sheet_frame_indices

    shown = len(sheet_frame_indices(frames, columns))
    pixels = seeds * shown * side * side
    if pixels > MAX_SHEET_PIXELS:
        raise InputError(
            f"--contact-sheet {columns} with {seeds:,} seeds makes a {pixels / 1e6:,.0f}-megapixel sheet; at most "
            f"{MAX_SHEET_PIXELS / 1e6:,.0f}: use fewer columns or seeds"
        )
