"""The ``aniportrait`` command line (a click group). Commands stay thin: parse, validate, call the library.

Bad input (wrong shapes, NaN, missing or corrupt files, unknown options) ends with one line on stderr that says
what is wrong and what to do, exit code 2, no traceback and no partial output.
"""

from __future__ import annotations

import importlib.metadata
import platform

import click

IMPL_CHOICE = click.Choice(["auto", "ref", "triton"])


class InputError(click.ClickException):
    """Bad user input: printed as ``Error: <message>`` with exit code 2."""

    exit_code = 2


def _input_errors():
    """Exception types that mean bad input rather than a bug."""
    from aniportrait.checkpoint import CheckpointError
    from aniportrait.models.body import BodyModelError
    from aniportrait.render.keyframes import KeyframeError

    return (CheckpointError, BodyModelError, KeyframeError)


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


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise InputError(f"--device {device}: unknown device; use auto, cpu, cuda or cuda:N") from None
    if parsed.type not in ("cpu", "cuda"):
        raise InputError(f"--device {device}: only cpu and cuda are supported")
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {device}: no CUDA device is available; use --device cpu")
    if parsed.type == "cuda" and (parsed.index or 0) >= torch.cuda.device_count():
        raise InputError(f"--device {device}: there are only {torch.cuda.device_count()} CUDA devices")
    return device


def _check_impl(impl: str, device: str) -> None:
    """Fail before rendering when ``--impl`` cannot run on ``device`` (e.g. triton on CPU)."""
    import torch

    from aniportrait.kernels._registry import resolve_impl

    try:
        resolve_impl("render", impl, torch.empty(0, device=device))
    except RuntimeError as err:
        raise InputError(f"--impl {impl}: {str(err).removeprefix('render: ')}") from None


@main.command()
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="Our .safetensors checkpoint (default: built-in).")
@click.option("--smpl", type=click.Path(dir_okay=False), help="SMPL_NEUTRAL.pkl/.npz for SMPL checkpoints.")
@click.option("--seeds", default="0", show_default=True, metavar="LIST", help="Identity seeds, e.g. 0,1,4-6.")
@click.option("--expression", type=click.Path(dir_okay=False), help="Expression keyframes [N, 64] (.npy).")
@click.option("--pose", type=click.Path(dir_okay=False), help="Pose keyframes [N, 6, 3] (.npy), ZYX Euler offsets.")
@click.option("--camera", type=click.Path(dir_okay=False), help="Camera keyframes [N, 2] = (pitch, yaw) (.npy).")
@click.option(
    "--trajectory",
    type=click.Choice(["demo", "yaw", "expression", "head", "shoulder", "pose", "video"]),
    default=None,
    help="Built-in keyframes when no file is given  [default: demo].",
)
@click.option("--n-interval", default=8, show_default=True, type=click.IntRange(1, 1000), help="Frames per keyframe.")
@click.option("--fps", default=25, show_default=True, type=click.IntRange(1, 240))
@click.option("--psi", default=0.7, show_default=True, type=click.FloatRange(0.0, 1.0), help="Truncation.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--impl", default="auto", show_default=True, type=IMPL_CHOICE, help="Kernel implementation.")
@click.option(
    "--precision",
    default="fp32",
    show_default=True,
    type=click.Choice(["fp32", "bf16"]),
    help="Arithmetic of the per-frame MLPs; bf16 is ~2x faster on CPUs with AVX512-BF16 and on GPUs.",
)
@click.option("--png", is_flag=True, help="Also write PNG frames.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
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
    png,
    out_dir,
    quiet,
) -> None:
    """Render animated portrait videos (portrait, low-resolution and depth mp4 per seed) from keyframes."""
    from aniportrait.render import keyframes as kf

    try:
        seed_list = kf.parse_seeds(seeds)
        if trajectory is not None and (expression or pose or camera):
            raise InputError("give keyframe files or --trajectory, not both")
        if expression or pose or camera:
            keys = kf.from_files(expression, pose, camera)
        else:
            keys = kf.builtin(trajectory or "demo")
        frames = kf.interpolate(keys, n_interval)
        device = _resolve_device(device)
        _check_impl(impl, device)
        generator, body = _load_model(checkpoint, smpl, device)
        from aniportrait.render.video import RenderSettings, check_writable, render_videos

        try:
            out = check_writable(out_dir)
        except OSError as err:
            raise InputError(f"cannot write to --out {out_dir}: {err.strerror or err}") from None
    except _input_errors() as err:
        raise InputError(str(err)) from None
    settings = RenderSettings(psi=psi, fps=fps, png=png, impl=impl, precision=precision, progress=not quiet)
    written = render_videos(generator, body, seed_list, frames, out, settings)
    click.echo(f"wrote {len(frames)} frames per seed to {out}/: " + ", ".join(p.name for p in written))


def _load_model(checkpoint, smpl, device):
    from aniportrait.checkpoint import load_generator
    from aniportrait.pretrained import body_for_checkpoint, builtin_generator

    if checkpoint is None:
        generator, metadata, valid_index = builtin_generator(device)
    else:
        generator, metadata, valid_index = load_generator(checkpoint, device=device)
    return generator, body_for_checkpoint(metadata, valid_index, smpl, device)


@main.command("convert-official")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--knn-index", required=True, type=click.Path(dir_okay=False), help="valid_smpl_knn_index.npy")
@click.option("-o", "--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Output .safetensors.")
@click.option("--smpl-out", type=click.Path(dir_okay=False), help="Also write the embedded SMPL arrays (.npz).")
def convert_official_command(checkpoint, knn_index, out_path, smpl_out) -> None:
    """Convert the authors' sshq512.pt (read with weights_only=True) to an aniportrait safetensors checkpoint."""
    import os

    from aniportrait.convert import convert_official

    for path in (out_path, smpl_out):
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise InputError(f"output folder does not exist: {os.path.dirname(os.path.abspath(path))}")
    try:
        counts = convert_official(checkpoint, knn_index, out_path, smpl_out=smpl_out)
    except _input_errors() as err:
        raise InputError(str(err)) from None
    click.echo(
        f"wrote {out_path}: {counts['network']} network tensors; checked and dropped {counts['duplicates']} duplicated "
        f"smoother and {counts['smpl_buffers']} SMPL buffers"
        + (f" (SMPL arrays written to {smpl_out})" if smpl_out else "")
    )


if __name__ == "__main__":  # pragma: no cover
    main()
