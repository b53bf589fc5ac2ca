"""`aniportrait train`: dry run, bad input, refusing to overwrite a run, an SMPL body, and torchrun's two processes."""

import json
import os
import socket

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from aniportrait.checkpoint import load_generator
from aniportrait.cli import main
from aniportrait.config import TINY, GeneratorConfig
from aniportrait.train.loop import GENERATOR_FILE, STATE_FILE
from tests.train.train_helpers import write_dataset

# One quick training step: batch 1 on the reference kernels.
ONE_STEP = ["--set", "total_steps=1", "--set", "batch_size=1", "--set", "impl=ref"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data") / "ds")


def train_args(data, out, *extra: str) -> list[str]:
    """The arguments of `aniportrait train --config tiny --data DATA --out OUT EXTRA...`."""
    return ["train", "--config", "tiny", "--data", str(data), "--out", str(out), *extra]


def test_cli_train_dry_run_and_bad_input(dataset, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, train_args(dataset, tmp_path / "x", "--dry-run"))
    assert result.exit_code == 0 and GeneratorConfig.from_dict(json.loads(result.output)["generator"]) == TINY
    result = runner.invoke(main, train_args(dataset, tmp_path / "x", "--set", "nope=1"))
    assert result.exit_code == 2 and "bad --set" in result.output and "Traceback" not in result.output
    result = runner.invoke(main, train_args(tmp_path / "missing", tmp_path / "y"))
    assert result.exit_code == 2 and "Error:" in result.output
    assert not (tmp_path / "y").exists()


def test_cli_train_runs_and_refuses_to_overwrite(dataset, tmp_path):
    runner = CliRunner()
    args = train_args(dataset, tmp_path / "run", "--quiet")
    result = runner.invoke(main, args + ONE_STEP)
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, args + ONE_STEP)
    assert result.exit_code == 2 and "--resume" in result.output
    result = runner.invoke(main, args + ["--set", "total_steps=2", "--set", "batch_size=2", "--resume"])
    assert result.exit_code == 2 and "batch_size" in result.output


RELEASE_SMPL = __import__("pathlib").Path(__file__).resolve().parents[1] / "fixtures" / "release-smpl"


def test_training_on_an_smpl_file_records_the_smpl_body(dataset, tmp_path):
    from aniportrait.models.rig import procedural_rig

    smpl = tmp_path / "SMPL_NEUTRAL.npz"
    np.savez(smpl, **procedural_rig())  # an SMPL-layout stand-in: no SMPL data
    result = CliRunner().invoke(
        main,
        train_args(dataset, tmp_path / "run", "--quiet", "--smpl", str(smpl))
        + ["--knn-index", str(RELEASE_SMPL / "valid_smpl_knn_index.npy")]
        + ["--smpl-landmarks", str(RELEASE_SMPL / "smpl_face_landmarks_bary.npy")]
        + ONE_STEP,
    )
    assert result.exit_code == 0, result.output
    _, metadata, valid_index = load_generator(tmp_path / "run" / GENERATOR_FILE)
    assert metadata["body"] == "smpl" and metadata["face_model"] == "procedural"
    assert torch.equal(valid_index, torch.from_numpy(np.load(RELEASE_SMPL / "valid_smpl_knn_index.npy")))
    partial = CliRunner().invoke(main, train_args(dataset, tmp_path / "r2", "--smpl", str(smpl)))
    assert partial.exit_code == 2 and "go together" in partial.output


def test_torchrun_two_processes_through_the_cli(dataset, tmp_path):
    """The real multi-process entry: torchrun -> `aniportrait train` -> gloo on CPU."""
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port)]
    command += ["-m", "aniportrait.cli", *train_args(dataset, tmp_path / "tr", "--quiet"), "--device", "cpu", *ONE_STEP]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "world 2" in (tmp_path / "tr" / "log.txt").read_text()
    assert (tmp_path / "tr" / STATE_FILE).is_file()
