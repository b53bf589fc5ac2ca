"""`aniportrait eval` end to end on a tiny synthetic dataset and a tiny generator."""

import json
import math
import shutil

import pytest
import torch
from click.testing import CliRunner

from aniportrait import pretrained
from aniportrait.cli import main
from aniportrait.config import TINY
from aniportrait.data.synth import synthesize
from aniportrait.eval.inception import FIDInception
from aniportrait.models.generator import AniPortraitGenerator, init_planar_manifolds


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("eval") / "ds", 8, res=64, seed=3, progress=False)


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    """A randomly initialised full-size FID Inception saved like the real weights file (numbers are meaningless)."""
    path = tmp_path_factory.mktemp("inception") / "pt_inception-random.pth"
    torch.manual_seed(0)
    torch.save(FIDInception().state_dict(), path)
    return path


@pytest.fixture(autouse=True)
def tiny_default(monkeypatch):
    def builtin(device="cpu"):
        torch.manual_seed(0)
        generator = AniPortraitGenerator(TINY)
        init_planar_manifolds(generator)
        return generator.to(device).eval(), {"body": "procedural"}, None

    monkeypatch.setattr(pretrained, "builtin_generator", builtin)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # small CPU models run faster on one thread on a busy 2-core machine
    yield
    torch.set_num_threads(previous)


def test_eval_writes_every_metric(dataset, inception_weights, tmp_path):
    out = tmp_path / "report.json"
    result = CliRunner().invoke(
        main,
        ["eval", "--data", str(dataset), "--inception", str(inception_weights), "--num", "4"]
        + ["--batch-size", "4", "--json", str(out), "--impl", "ref"],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    for key in ("fid_full", "kid_x100_full", "fid_face", "kid_x100_face", "control_camera_deg", "identity_gap"):
        assert math.isfinite(report[key]), key
    for key in ("fidelity", "fidelity_floor", "control_floor_camera_deg", "control_floor_expression"):
        assert math.isfinite(report[key]) and report[key] >= 0, key
    assert report["num"] == 4 and "fid_full" in result.output


def test_eval_control_and_fidelity_need_no_inception(dataset, tmp_path):
    result = CliRunner().invoke(main, ["eval", "--data", str(dataset), "--metrics", "control,fidelity", "--num", "4"])
    assert result.exit_code == 0, result.output
    assert "control_head_pose_deg" in result.output and "fidelity_floor" in result.output
    # without 2 x num rows there is no data-vs-data floor
    result = CliRunner().invoke(main, ["eval", "--data", str(dataset), "--metrics", "fidelity", "--num", "5"])
    assert result.exit_code == 0 and "fidelity " in result.output and "fidelity_floor" not in result.output


def test_eval_skips_estimator_metrics_on_other_data(dataset, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(dataset, other)
    meta = json.loads((other / "dataset.json").read_text())
    (other / "dataset.json").write_text(json.dumps(dict(meta, source="a photo collection")))
    result = CliRunner().invoke(main, ["eval", "--data", str(other), "--metrics", "control,fidelity", "--num", "4"])
    assert result.exit_code == 0, result.output
    assert "skipped" in result.output and "control_camera_deg" not in result.output
    assert "'a photo collection'" in result.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["--metrics", "fid"], "need --inception"),
        (["--metrics", "bogus"], "unknown metrics bogus"),
        (["--metrics", "control", "--inception", "missing.pth"], "not found"),
        (["--metrics", "control", "--json", "/nonexistent/dir/r.json"], "does not exist"),
    ],
)
def test_eval_bad_input(dataset, args, message):
    result = CliRunner().invoke(main, ["eval", "--data", str(dataset), "--num", "2", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
