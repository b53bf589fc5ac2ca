"""The run folder is the truth on resume: settings from config.json, refused changes touch nothing, logs dedupe."""

import json
import os

import pytest
from click.testing import CliRunner
from test_train import FAST, write_dataset

from aniportrait.cli import main
from aniportrait.train.config import TrainConfig
from aniportrait.train.loop import Trainer
from aniportrait.train.run_folder import RunFolder, RunFolderError, check_creatable

SETS = ["--set", "batch_size=1", "--set", "impl=ref", "--set", "log_every=1", "--set", "sample_every=1000"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data") / "ds")


def train(*args):
    return CliRunner().invoke(main, ["train", *map(str, args), "--quiet"])


def snapshot(folder):
    """{relative path: (size, mtime_ns, bytes)} of every file in a folder."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = (os.stat(path).st_mtime_ns, f.read())
    return out


@pytest.fixture(scope="module")
def run(dataset, tmp_path_factory):
    """A two-step run made with a preset and overrides, as a user would."""
    out = tmp_path_factory.mktemp("runs") / "run"
    result = train("--data", dataset, "--out", out, "--config", "tiny", "--set", "total_steps=2", *SETS)
    assert result.exit_code == 0, result.output
    return out


def test_resume_alone_continues_with_the_runs_settings(run, dataset, tmp_path):
    copy = tmp_path / "copy"
    os.system(f"cp -r {run} {copy}")
    result = train("--data", dataset, "--out", copy, "--resume", "--set", "total_steps=3")
    assert result.exit_code == 0, result.output
    config = json.loads((copy / "config.json").read_text())
    assert config["total_steps"] == 3 and config["batch_size"] == 1 and config["impl"] == "ref"
    steps = [json.loads(line)["step"] for line in (copy / "stats.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_resume_without_total_steps_keeps_the_runs_value(run, dataset, tmp_path):
    copy = tmp_path / "copy"
    os.system(f"cp -r {run} {copy}")
    result = train("--data", dataset, "--out", copy, "--resume")
    assert result.exit_code == 0, result.output
    assert "trained to step 2" in result.output, "no silent fall-back to the preset's total_steps"


@pytest.mark.parametrize(
    "extra, key",
    [
        (["--set", "lr_g=0.001"], "lr_g"),
        (["--set", "batch_size=2"], "batch_size"),
        (["--config", "small"], "model"),
    ],
)
def test_a_refused_resume_names_the_key_and_changes_nothing(run, dataset, extra, key):
    before = snapshot(run)
    result = train("--data", dataset, "--out", run, "--resume", *extra)
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert "\n" not in line and "Traceback" not in line
    assert key in line and "config.json" in line
    assert snapshot(run) == before


def test_resume_of_a_folder_without_a_state_creates_nothing(dataset, tmp_path):
    for folder in (tmp_path / "missing", tmp_path / "empty"):
        if folder.name == "empty":
            folder.mkdir()
        result = train("--data", dataset, "--out", folder, "--resume")
        assert result.exit_code == 2 and "without --resume" in result.output
    assert not (tmp_path / "missing").exists()
    assert list((tmp_path / "empty").iterdir()) == []


def test_stats_hold_each_step_once_after_a_resume(dataset, tmp_path):
    out = tmp_path / "run"
    trainer = Trainer(TrainConfig(**{**FAST, "total_steps": 3, "checkpoint_every": 2}), dataset, out, progress=False)
    save = trainer.save

    def killed_at_the_last_checkpoint():
        if trainer.step == 3:
            raise KeyboardInterrupt
        save()

    trainer.save = killed_at_the_last_checkpoint
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    steps = [json.loads(line)["step"] for line in (out / "stats.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3], "step 3 was logged, its checkpoint never written"
    result = train("--data", dataset, "--out", out, "--resume")
    assert result.exit_code == 0, result.output
    steps = [json.loads(line)["step"] for line in (out / "stats.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_new_run_into_an_uncreatable_folder_is_refused(dataset, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = train("--data", dataset, "--out", blocker / "run", *SETS)
    assert result.exit_code == 2 and "is a file" in result.output and "Traceback" not in result.output
    result = train("--data", dataset, "--out", blocker, *SETS)
    assert result.exit_code == 2 and "is a file" in result.output
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        result = train("--data", dataset, "--out", locked / "run", *SETS)
        assert result.exit_code == 2 and "not writable" in result.output


def test_check_creatable_and_resume_config_directly(tmp_path):
    check_creatable(tmp_path / "a" / "b")  # nothing in the way
    with pytest.raises(RunFolderError, match="no state.safetensors"):
        RunFolder(tmp_path).resume_config(None, {})


@pytest.mark.parametrize(
    "override, message",
    [
        ("lr_g=-1", "lr_g=-1.0 is out of range"),
        ("lr_d=0", "lr_d=0.0 is out of range"),
        ("ema_decay=5", "ema_decay=5.0 is out of range"),
        ("ema_decay=1", "ema_decay=1.0 is out of range"),
        ("beta1=1", "beta1=1.0 is out of range"),
        ("beta2=-0.1", "beta2=-0.1 is out of range"),
        ("weight_face=-1", "weight_face=-1.0 is out of range"),
        ("imitation_lambda=-2", "imitation_lambda=-2.0 is out of range"),
        ("grad_clip=0", "grad_clip=0.0 is out of range"),
        ("r1_every=0", "r1_every=0 is out of range"),
        ("batch_size=0", "batch_size=0 is out of range"),
        ("total_steps=-5", "total_steps=-5 is out of range"),
        ("lr_g=nan", "expected a finite float"),
        ("lr_g=inf", "expected a finite float"),
        ("batch_size=1.5", "expected a finite int"),
        ("amp=maybe", "expected a finite bool"),
        ("model=huge", "model='huge' is not allowed"),
        ("stage=3", "stage=3 is not allowed"),
        ("nope=1", "bad --set"),
        ("lr_g", "bad --set"),
    ],
)
def test_every_training_value_is_range_checked(dataset, tmp_path, override, message):
    result = train("--data", dataset, "--out", tmp_path / "run", "--set", override)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_config_round_trips_through_json():
    config = TrainConfig(lr_g=3e-5, batch_size=2, **{k: v for k, v in FAST.items() if k != "batch_size"})
    assert TrainConfig.from_json(config.to_json()) == config
