"""The training settings: the JSON round trip, the range check of every value given with `--set`, and the small
preset."""

import pytest

from aniportrait.train.config import PRESETS, TrainConfig
from tests.train.train_helpers import FAST, train, write_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data") / "ds")


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


def test_small_preset_is_the_documented_cpu_recipe():
    small = PRESETS["small"]
    assert small.model == "small" and small.shape_prior_steps > 0 and small.sr_prior_steps > 0
    assert small.deform_prior_steps > 0 and small.recon_steps > 0
    assert small.total_steps == 1, "the warm-ups make the built-in default (docs/training/README.md, section 8)"
    assert not small.train_smoother
    with pytest.raises(ValueError, match="shape_prior_steps"):
        TrainConfig(shape_prior_steps=-1)
