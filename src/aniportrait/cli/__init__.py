"""The ``aniportrait`` command line (a click group). Commands stay thin: parse, validate, call the library.

Bad input (wrong shapes, NaN, missing or corrupt files, unknown options) ends with one line on stderr that says
what is wrong and what to do, exit code 2, no traceback and no partial output. Click's own usage errors are printed
on one line too (``_Group``), float options refuse NaN and infinity (``FiniteFloat``), and path options refuse an
empty string (``NonEmptyPath``).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import math
import os
import platform

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


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(importlib.metadata.version("aniportrait"), prog_name="aniportrait")
def main() -> None:
    """AniPortraitGAN: animatable 3D-aware head-and-shoulder portraits on fused Triton kernels."""


@main.command()
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
psi_option = click.option("--psi", default=0.7, show_default=True, type=FiniteFloat(0.0, 1.0), help="Truncation.")
device_options = _stack(
    click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
    click.option("--impl", default="auto", show_default=True, type=IMPL_CHOICE, help="Kernel implementation."),
)


@main.command()
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
    default=8,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Frames per keyframe; a video has at most 100,000 frames (keyframes x n-interval).",
)
@click.option("--fps", default=25, show_default=True, type=click.IntRange(1, 240))
@psi_option
@device_options
@click.option(
    "--precision",
    default="fp32",
    show_default=True,
    type=click.Choice(["fp32", "bf16"]),
    help="Arithmetic of the per-frame MLPs; bf16 is ~2x faster on CPUs with AVX512-BF16 and on GPUs.",
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
    png,
    sheet_columns,
    out_dir,
    quiet,
) -> None:
    """Render animated portrait videos (portrait, low-resolution and depth mp4 per seed) from keyframes.

    Keyframe values beyond the plausible ranges in the option help are refused, and so is a video of more than
    100,000 frames or a contact sheet of more than 2**28 pixels."""
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
        frames = kf.interpolate(keys, n_interval)
        device = _resolve_device(device)
        _check_impl(impl, device)
        generator, body = _load_model(checkpoint, smpl, device)
        _check_contact_sheet(sheet_columns, len(seed_list), len(frames), generator.config.hr_img_size)
        from aniportrait.render.video import RenderSettings, check_writable, render_videos

        try:
            out = check_writable(out_dir)
        except OSError as err:
            raise InputError(f"cannot write to --out {out_dir}: {err.strerror or err}") from None
    except _input_errors() as err:
        raise InputError(str(err)) from None
    settings = RenderSettings(
        psi=psi, fps=fps, png=png, sheet_columns=sheet_columns, impl=impl, precision=precision, progress=not quiet
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


def _same_file(a: str, b: str) -> bool:
    """Whether two paths name the same file (following links; also for files that do not exist yet)."""
    return os.path.realpath(a) == os.path.realpath(b)


def _load_model(checkpoint, smpl, device):
    from aniportrait.api import load

    portrait = load(checkpoint, smpl, device)
    return portrait.generator, portrait.body


@main.command("convert-official")
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


@main.command("export-mesh")
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


@main.group()
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


class TrainingFailed(click.ClickException):
    """Training stopped (e.g. a non-finite loss): exit code 1, the message says what was kept."""

    exit_code = 1


@main.command()
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False), help="Dataset folder.")
@click.option("--out", "run_dir", required=True, type=click.Path(file_okay=False), help="Run folder.")
@click.option(
    "--config",
    "preset",
    default=None,
    type=click.Choice(["tiny", "small", "sshq512"]),
    help="Preset: tiny (tests), small (the built-in default's CPU recipe), sshq512 (the paper's)  "
    "[default: tiny; on --resume, the run's own settings].",
)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config value (repeatable).")
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in --out exactly where it stopped, with the settings in its config.json; only total_steps "
    "and the logging, sample, snapshot and checkpoint intervals may be changed with --set.",
)
@click.option(
    "--init-from",
    type=click.Path(dir_okay=True),
    help="Start from a generator file (.safetensors) or another run (its folder or state.safetensors: generator, EMA "
    "and discriminators), e.g. stage 2 from a stage-1 run.",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N (torchrun: per rank).")
@click.option("--smpl", type=click.Path(dir_okay=False), help="Train on SMPL: SMPL_NEUTRAL.pkl/.npz (plain numpy).")
@click.option("--knn-index", type=click.Path(dir_okay=False), help="With --smpl: valid_smpl_knn_index.npy.")
@click.option("--smpl-landmarks", type=click.Path(dir_okay=False), help="With --smpl: 68 face landmarks [68, 4].")
@click.option("--bfm", type=click.Path(dir_okay=False), help="BFM_model_front.mat for the imitation loss.")
@click.option("--dry-run", is_flag=True, help="Print the resolved config and exit.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(
    data_dir,
    run_dir,
    preset,
    overrides,
    resume,
    init_from,
    device,
    smpl,
    knn_index,
    smpl_landmarks,
    bfm,
    dry_run,
    quiet,
) -> None:
    """Train AniPortraitGAN (stage 1 or 2, see --set stage=2) on a dataset; multi-GPU with torchrun.

    The run folder gets config.json, log.txt, stats.jsonl, snapshots.jsonl, samples/*.png, state.safetensors (every
    state, for --resume) and generator.safetensors (the EMA generator, for `aniportrait render --checkpoint`).
    """
    import os

    from aniportrait.train.config import PRESETS, parse_overrides
    from aniportrait.train.run_folder import RunFolder, RunFolderError

    folder = RunFolder(run_dir)
    try:
        values = parse_overrides(overrides)
        requested = PRESETS[preset].with_overrides(overrides) if preset else None
        if resume:
            config = folder.resume_config(requested, values)
        else:
            config = requested or PRESETS["tiny"].with_overrides(overrides)
            folder.check_new()
        if init_from is not None and not os.path.exists(init_from):
            raise RunFolderError(f"--init-from {init_from}: no such file or folder")
        if init_from is not None and resume:
            raise RunFolderError("--init-from starts a new run; it cannot be combined with --resume")
    except _input_errors() as err:
        raise InputError(str(err)) from None
    if dry_run:
        click.echo(config.to_json())
        return
    from aniportrait.train.loop import Trainer, TrainingError

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        device = _init_distributed(device)
    else:
        device = _resolve_device(device)
    try:
        trainer = Trainer(
            config,
            data_dir,
            run_dir,
            device=device,
            init_from=init_from,
            smpl=smpl,
            knn_index=knn_index,
            smpl_landmarks=smpl_landmarks,
            bfm=bfm,
            progress=not quiet,
        )
        trainer.run(resume=resume)
    except _input_errors() as err:
        raise InputError(str(err)) from None
    except TrainingError as err:
        raise TrainingFailed(str(err)) from None
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    click.echo(f"trained to step {trainer.step}; generator: {folder.generator}")


@main.command("eval")
@model_options
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=NonEmptyPath(exists=True, file_okay=False),
    help="Dataset (reals, labels).",
)
@click.option(
    "--inception",
    type=NonEmptyPath(dir_okay=False),
    help="pt_inception-2015-12-05-6726825d.pth (pytorch-fid's FID Inception weights), for fid, kid and identity.",
)
@click.option(
    "--metrics", "metric_list", default="fid,kid,control,identity,fidelity", show_default=True, metavar="LIST"
)
@click.option("--num", default=1000, show_default=True, type=click.IntRange(2), help="Images per set.")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1))
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**32 - 1))
@device_options
@click.option("--json", "json_out", type=NonEmptyPath(dir_okay=False), help="Also write the report as JSON here.")
def eval_command(
    checkpoint, smpl, data_dir, inception, metric_list, num, batch_size, seed, device, impl, json_out
) -> None:
    """Evaluate a checkpoint against a dataset: FID and KID x 100 (portrait and face), control accuracy, identity
    consistency, and fidelity in the synthetic estimator's feature space (control and fidelity: `data synth` datasets
    only). Prints a table; --json writes the report."""
    from aniportrait.eval.inception import load_fid_inception
    from aniportrait.eval.report import METRICS, evaluate, format_table, to_json

    wanted = _parse_metrics(metric_list, METRICS)
    if json_out:
        for source in (checkpoint, inception):
            if source and _same_file(json_out, source):
                raise InputError(f"--json {json_out} would overwrite the input {source}; choose another path")
        _check_output_file(json_out, "--json")
    try:
        device = _resolve_device(device)
        _check_impl(impl, device)
        generator, body = _load_model(checkpoint, smpl, device)
        extractor = load_fid_inception(inception, device=device) if inception else None
        report = evaluate(
            generator,
            body,
            data_dir,
            metrics_wanted=wanted,
            inception=extractor,
            num=num,
            batch_size=batch_size,
            seed=seed,
            impl=impl,
        )
    except _input_errors() as err:
        raise InputError(str(err)) from None
    click.echo(format_table(report))
    if json_out:
        from pathlib import Path

        from aniportrait.checkpoint import atomic_write

        text = to_json(report)
        atomic_write(json_out, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _parse_metrics(text: str, known: tuple[str, ...]) -> tuple[str, ...]:
    """``--metrics``: a comma-separated list of at least one known metric (duplicates dropped, order kept)."""
    wanted = tuple(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    unknown = [m for m in wanted if m not in known]
    if unknown:
        raise InputError(f"--metrics: unknown metrics {', '.join(unknown)}; choose from {', '.join(known)}")
    if not wanted:
        raise InputError(f"--metrics {text!r} names no metric; choose one or more of {', '.join(known)}")
    return wanted


def _init_distributed(device: str) -> str:
    """Join the torchrun job: NCCL on CUDA (one GPU per local rank), gloo on CPU."""
    import os

    import torch
    import torch.distributed as dist

    use_cuda = device != "cpu" and torch.cuda.is_available()
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return "cpu"
