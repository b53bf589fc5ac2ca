"""`aniportrait train`: the two training stages, single process or under torchrun."""

from __future__ import annotations

import os

import click

from aniportrait.cli.common import (
    InputError,
    _input_errors,
    _resolve_device,
)


class TrainingFailed(click.ClickException):
    """Training stopped (e.g. a non-finite loss): exit code 1, the message says what was kept."""

    exit_code = 1


@click.command()
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False), help="Dataset folder.")
@click.option("--out", "run_dir", required=True, type=click.Path(file_okay=False), help="Run folder.")
@click.option(
    "--config",
    "preset",
    default=None,
    metavar="NAME|FILE",
    help="Preset: tiny (tests), small (the built-in default's CPU recipe), sshq512 (the paper's), or a YAML file "
    "with generator and training sections, as the presets are written  [default: small; on --resume, the run's own "
    "settings].",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config value (repeatable): a training setting (lr_g=1e-4, or training.lr_g=1e-4) or a "
    "generator size (generator.hidden_dim=96).",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in --out exactly where it stopped (in a warm-up too), with the settings in its "
    "config.json; only total_steps, the logging, sample, snapshot and checkpoint intervals, data_workers, impl and "
    "the rendering settings may be changed with --set.",
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

    The run folder gets config.json, log.txt, stats.jsonl, snapshots.jsonl, warmups.jsonl (the warm-ups' loss
    curves), samples/*.png, state.safetensors (every state, for --resume; written every checkpoint_every steps, in
    the warm-ups too) and generator.safetensors (the EMA generator, for `aniportrait render --checkpoint`). The
    small preset holds the built-in default's settings (its model card gives the five runs of its recipe): its
    warm-ups, then one adversarial step (give --set total_steps=N for more).
    """

    from aniportrait.train.config import load_preset, parse_overrides
    from aniportrait.train.run_folder import RunFolder, RunFolderError

    folder = RunFolder(run_dir)
    try:
        values = parse_overrides(overrides)
        requested = load_preset(preset).with_overrides(overrides) if preset else None
        if resume:
            config = folder.resume_config(requested, values)
        else:
            config = requested or load_preset("small").with_overrides(overrides)
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


def _init_distributed(device: str) -> str:
    """Join the torchrun job: NCCL on CUDA (one GPU per local rank), gloo on CPU."""

    import torch
    import torch.distributed as dist

    use_cuda = device != "cpu" and torch.cuda.is_available()
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return "cpu"
