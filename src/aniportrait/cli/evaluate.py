"""`aniportrait eval`: FID, KID, control accuracy, identity consistency and fidelity of a checkpoint."""

from __future__ import annotations

import click

from aniportrait.cli.common import (
    InputError,
    NonEmptyPath,
    _check_impl,
    _check_output_file,
    _input_errors,
    _load_model,
    _resolve_device,
    _same_file,
    device_options,
    model_options,
)


@click.command("eval")
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
        portrait = _load_model(checkpoint, smpl, device)
        generator, body = portrait.generator, portrait.body
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

        from aniportrait.staging import atomic_write

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
