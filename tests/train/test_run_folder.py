"""The run folder is the truth on resume: settings from config.json, refused changes touch nothing, logs dedupe."""

import json
import os

import pytest
import torch

from aniportrait.train.config import TrainConfig
from aniportrait.train.loop import Trainer
from aniportrait.train.run_folder import RunFolder, RunFolderError, check_creatable
from tests.train.train_helpers import FAST, train, write_dataset

SETS = ["--set", "batch_size=1", "--set", "impl=ref", "--set", "log_every=1", "--set", "sample_every=1000"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data") / "ds")


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
    config = json.loads((copy / "config.json").read_text())["training"]
    assert config["total_steps"] == 3 and config["batch_size"] == 1 and config["impl"] == "ref"
    steps = [json.loads(line)["step"] for line in (copy / "stats.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_resume_may_change_the_rendering_settings(run, dataset, tmp_path):
    from aniportrait.checkpoint import load_generator, rendering_config

    copy = tmp_path / "copy"
    os.system(f"cp -r {run} {copy}")
    result = train("--data", dataset, "--out", copy, "--resume", "--set", "total_steps=3", "--set", "rendering.psi=0.5")
    assert result.exit_code == 0, result.output
    assert json.loads((copy / "config.json").read_text())["rendering"]["psi"] == 0.5
    assert rendering_config(load_generator(copy / "generator.safetensors")[1]).psi == 0.5


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
        (["--config", "small"], "generator.hidden_dim"),
        (["--set", "generator.hidden_dim=48"], "generator.hidden_dim"),
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


WARM = {**FAST, "total_steps": 1, "checkpoint_every": 2, "shape_prior_steps": 3, "deform_prior_steps": 3}


def _tensors(path):
    from safetensors.torch import load_file

    return load_file(path)


@pytest.fixture(scope="module")
def uninterrupted(dataset, tmp_path_factory):
    """Stage 1's three warm-ups (learned codes) and one step, never stopped: what a resumed run must reproduce."""
    out = tmp_path_factory.mktemp("warm") / "run"
    Trainer(TrainConfig(**WARM, recon_steps=4, recon_images=2), dataset, out, progress=False).run()
    return out


def _stopped_at(trainer, stop_at, **run):
    """Run ``trainer`` and stop it at its ``stop_at``-th state save (the save not made)."""
    save_state, calls = trainer._save_state, []

    def killed(*args, **kwargs):
        calls.append(1)
        if len(calls) == stop_at:
            raise KeyboardInterrupt
        save_state(*args, **kwargs)

    trainer._save_state = killed
    with pytest.raises(KeyboardInterrupt):
        trainer.run(**run)


# The run saves its state after step 2 of each warm-up (checkpoint_every=2), after the shape and the deformation
# warm-ups, after the last (with the EMA) and at step 1: seven saves. Stopping at save k loses everything since
# save k - 1: 2 = in the shape warm-up, 5 = between the deformation and reconstruction warm-ups, 6 = in the
# reconstruction warm-up with its whole curve already logged, 7 = after the warm-ups, before step 1.
@pytest.mark.parametrize("stop_at", [2, 5, 6, 7])
def test_a_run_stopped_in_its_warm_ups_resumes_exactly(uninterrupted, dataset, tmp_path, stop_at):
    out = tmp_path / "run"
    _stopped_at(Trainer(TrainConfig(**WARM, recon_steps=4, recon_images=2), dataset, out, progress=False), stop_at)
    assert not (out / "generator.safetensors").exists()
    result = train("--data", dataset, "--out", out, "--resume")
    assert result.exit_code == 0, result.output
    expected, resumed = _tensors(uninterrupted / "generator.safetensors"), _tensors(out / "generator.safetensors")
    assert expected.keys() == resumed.keys()
    assert all(torch.equal(expected[k], resumed[k]) for k in expected), "the resumed run differs"
    state, resumed_state = _tensors(uninterrupted / "state.safetensors"), _tensors(out / "state.safetensors")
    assert all(torch.equal(state[k], resumed_state[k]) for k in state if k.startswith(("module/", "optim/")))
    for name in ("warmups.jsonl", "stats.jsonl"):
        lines = [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in (out / name).open()]
        assert lines == [
            {k: v for k, v in json.loads(line).items() if k != "seconds"} for line in (uninterrupted / name).open()
        ], name
    if stop_at in (2, 6):
        assert "resume the" in (out / "log.txt").read_text()


def test_a_new_run_refuses_a_folder_stopped_in_its_warm_ups_and_init_from_refuses_it(dataset, tmp_path):
    out = tmp_path / "run"
    _stopped_at(Trainer(TrainConfig(**WARM), dataset, out, progress=False), 2)
    result = train("--data", dataset, "--out", out)
    assert result.exit_code == 2 and "--resume" in result.output
    result = train("--data", dataset, "--out", tmp_path / "next", "--init-from", out)
    assert result.exit_code == 2, result.output
    assert "stopped during its warm-ups" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "next").exists()


def test_a_run_stopped_before_its_first_checkpoint_is_named_as_such(dataset, tmp_path):
    """config.json without a state: neither --resume nor a new run goes on; both say to delete the folder."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(TrainConfig(**FAST).to_json())
    before = snapshot(out)
    for extra in ([], ["--resume"]):
        result = train("--data", dataset, "--out", out, *extra)
        assert result.exit_code == 2, result.output
        line = result.output.strip()
        assert "stopped before its first checkpoint" in line and "delete the folder" in line and "\n" not in line
    assert snapshot(out) == before


def test_resume_refuses_another_dataset_and_changes_nothing(run, tmp_path):
    other = write_dataset(tmp_path / "other", seed=1)
    before = snapshot(run)
    result = train("--data", other, "--out", run, "--resume", "--set", "total_steps=3")
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert "is not the dataset" in line and "give that run's --data" in line and "\n" not in line
    assert snapshot(run) == before


def test_a_run_stopped_twice_in_its_warm_ups_still_resumes_exactly(uninterrupted, dataset, tmp_path):
    """Stopped in the deformation warm-up, then again (on resume) before its first save past that: no save of the
    resumed run may record less progress than the state it resumed from."""
    out, config = tmp_path / "run", TrainConfig(**WARM, recon_steps=4, recon_images=2)
    _stopped_at(Trainer(config, dataset, out, progress=False), 4)
    _stopped_at(Trainer(config, dataset, out, progress=False), 2, resume=True)
    result = train("--data", dataset, "--out", out, "--resume")
    assert result.exit_code == 0, result.output
    expected, resumed = _tensors(uninterrupted / "generator.safetensors"), _tensors(out / "generator.safetensors")
    assert all(torch.equal(expected[k], resumed[k]) for k in expected), "the resumed run differs"
