"""The training settings: the JSON round trip, the range check of every value given with `--set`, the YAML presets
and config files, the generator section, and the small preset."""

import dataclasses
import json
import pathlib

import pytest

from aniportrait.config import SMALL, SSHQ512, TINY, RenderingConfig
from aniportrait.train.config import PRESET_NAMES, PRESETS, ConfigError, TrainConfig, load_preset
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
        ("model=small", "bad --set"),
        ("generator.hidden_dim=0", "generator config hidden_dim=0 is invalid"),
        ("generator.nope=1", "bad --set"),
        ("generator.sr_up_channels=a,b", "expected comma-separated positive integers"),
        ("rendering.psi=1.5", "rendering psi=1.5 must be a number in [0, 1]"),
        ("rendering.fps=fast", "bad --set rendering.fps=fast: expected a finite int"),
        ("rendering.nope=1", "bad --set"),
        ("stage=3", "stage=3 is not allowed"),
        ("generator.expression_gate_slope=-1", "expression_gate_slope must be in [0, 10]"),
        ("nope=1", "bad --set"),
        ("lr_g", "bad --set"),
    ],
)
def test_every_training_value_is_range_checked(dataset, tmp_path, override, message):
    result = train("--data", dataset, "--out", tmp_path / "run", "--set", override)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_stage_two_of_a_generator_without_super_resolution_is_refused(dataset, tmp_path):
    args = ("--set", "stage=2", "--set", "generator.field_hr_textures=true")
    result = train("--data", dataset, "--out", tmp_path / "run", *args)
    assert result.exit_code == 2, result.output
    assert "stage=2 trains super-resolution" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_texel_jitter_is_refused_in_stage_two(dataset, tmp_path):
    result = train("--data", dataset, "--out", tmp_path / "run", "--set", "stage=2", "--set", "texel_jitter=true")
    assert result.exit_code == 2, result.output
    assert "texel_jitter" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (("recon_window=8",), "recon_window fits the full-size frame of a field_hr_textures model in stage 1"),
        (
            ("recon_window=8", "stage=2", "generator.field_hr_textures=true"),
            "recon_window fits the full-size frame",
        ),
        (("recon_window=65", "generator.field_hr_textures=true"), "recon_window=65 exceeds the full-size frame (64)"),
        (("recon_window=-1",), "recon_window=-1 is out of range"),
        (("face_textures=true",), "face_textures makes the stage-1 face view read"),
        (("face_textures=true", "stage=2", "generator.field_hr_textures=true"), "face_textures makes the stage-1"),
        (("face_at_lookup=true", "stage=2"), "face_at_lookup moves the points"),
        (
            ("face_at_lookup=true", "face_textures=true", "generator.field_hr_textures=true"),
            "face_at_lookup moves the points",
        ),
        (("face_at_lookup=true", "generator.texel_centres=true"), "face_at_lookup does nothing with"),
        (("recon_window_weight=-1",), "recon_window_weight=-1.0 is out of range"),
        (("recon_window_on=face",), "recon_window_on='face' is not allowed; use one of frame, figure"),
        (("recon_hr_face_weight=1",), "recon_hr_face_weight fits the full-size face of a field_hr_textures model"),
        (("recon_hr_face_weight=1", "stage=2", "generator.field_hr_textures=true"), "recon_hr_face_weight fits"),
        (("recon_hr_face_weight=-1",), "recon_hr_face_weight=-1.0 is out of range"),
        (("recon_gradient_weight=-0.5",), "recon_gradient_weight=-0.5 is out of range"),
        (("recon_gradient_weight=nan",), "recon_gradient_weight"),
    ],
)
def test_bad_full_size_windows_and_face_textures_are_refused(dataset, tmp_path, overrides, message):
    args = [arg for override in overrides for arg in ("--set", override)]
    result = train("--data", dataset, "--out", tmp_path / "run", *args)
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


def test_presets_are_the_yaml_files_and_name_their_generators():
    assert set(PRESETS) == set(PRESET_NAMES) == {"tiny", "small", "sshq512"}
    assert PRESETS["tiny"] == TrainConfig() and PRESETS["tiny"].generator == TINY
    assert PRESETS["small"].generator == SMALL and PRESETS["small"].lr_g == 2e-5  # YAML's 2.0e-5, a float
    assert PRESETS["sshq512"].generator == SSHQ512 and PRESETS["sshq512"].total_steps == 100_000
    assert [load_preset(name) for name in PRESET_NAMES] == [PRESETS[name] for name in PRESET_NAMES]


def test_config_json_has_a_generator_a_rendering_and_a_training_section():
    config = PRESETS["small"].with_overrides(["generator.hidden_dim=48", "training.lr_g=1e-4", "batch_size=2"])
    data = json.loads(config.to_json())
    assert set(data) == {"generator", "rendering", "training"}
    assert "generator" not in data["training"] and "rendering" not in data["training"]
    assert data["generator"]["hidden_dim"] == 48 and data["training"]["lr_g"] == 1e-4
    assert config.generator == dataclasses.replace(SMALL, hidden_dim=48) and config.model == "custom"
    assert config.batch_size == 2 and TrainConfig.from_json(config.to_json()) == config
    assert config.changed_keys(PRESETS["small"]) == ["batch_size", "generator.hidden_dim", "lr_g"]
    assert config.value("generator.hidden_dim") == 48 and config.value("training.lr_g") == config.value("lr_g")
    assert PRESETS["small"].with_overrides(["generator.color_modulation=true"]).generator.color_modulation


def test_the_rendering_section_is_set_like_the_others():
    config = PRESETS["small"].with_overrides(["rendering.psi=0.5", "rendering.precision=bf16", "lr_g=1e-4"])
    assert config.rendering == RenderingConfig(psi=0.5, precision="bf16") and config.lr_g == 1e-4
    assert json.loads(config.to_json())["rendering"]["psi"] == 0.5 and TrainConfig.from_json(config.to_json()) == config
    assert config.changed_keys(PRESETS["small"]) == ["lr_g", "rendering.precision", "rendering.psi"]
    assert config.value("rendering.psi") == 0.5
    assert PRESETS["small"].rendering == PRESETS["sshq512"].rendering == RenderingConfig()
    # A config without the section (older run folders) renders with the defaults.
    data = json.loads(config.to_json())
    del data["rendering"]
    assert TrainConfig.from_dict(data).rendering == RenderingConfig()


def test_a_flat_config_of_an_older_run_folder_is_read():
    flat = json.loads(PRESETS["small"].to_json())["training"]
    assert TrainConfig.from_json(json.dumps({**flat, "model": "small"})) == PRESETS["small"]
    with pytest.raises(ConfigError, match="unknown generator preset 'huge'"):
        TrainConfig.from_json(json.dumps({"model": "huge"}))


def test_a_config_file_takes_a_custom_generator_over_a_preset(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("generator:\n  preset: small\n  hidden_dim: 96\ntraining:\n  lr_g: 5e-5\n  total_steps: 7\n")
    config = load_preset(path)
    assert config.generator == dataclasses.replace(SMALL, hidden_dim=96)
    assert config.lr_g == 5e-5 and config.total_steps == 7 and config.batch_size == TrainConfig().batch_size


@pytest.mark.parametrize(
    "text, message",
    [
        ("generator: small\ntraining:\n  nope: 1\n", "unknown training config keys: nope"),
        ("generator: huge\n", "unknown generator preset 'huge'"),
        ("generator: {preset: small, width: 3}\n", "unknown generator config keys: width"),
        ("generator: small\nshading: {}\n", "sections generator, rendering and training only"),
        ("rendering: {psi: 1.5}\n", "rendering psi=1.5 must be a number in"),
        ("rendering: {speed: 2}\n", "unknown rendering config keys: speed"),
        ("training: [1, 2]\n", "training section must be a mapping"),
        ("training: {lr_g: fast}\n", "bad value training.lr_g=fast"),
        ("training: {lr_g: -1.0}\n", "lr_g=-1.0 is out of range"),
        ("generator: small\n  bad: [\n", "not valid YAML"),
        ("- 1\n- 2\n", "sections generator, rendering and training only"),
    ],
)
def test_a_bad_config_file_is_refused_in_one_line(tmp_path, dataset, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_preset(path)
    result = train("--data", dataset, "--out", tmp_path / "run", "--config", path)
    assert result.exit_code == 2 and message.split("=")[0].split(" '")[0] in result.output, result.output
    assert "\n" not in result.output.strip() and not (tmp_path / "run").exists()


def test_an_unknown_config_name_says_what_to_give(tmp_path, dataset):
    result = train("--data", dataset, "--out", tmp_path / "run", "--config", "huge")
    assert result.exit_code == 2 and "not a preset (tiny, small, sshq512)" in result.output, result.output


def test_a_custom_generator_size_trains_from_the_command_line(tmp_path, dataset):
    run = tmp_path / "run"
    sets = [f"--set={k}={v}" for k, v in FAST.items()] + ["--set=total_steps=1", "--set=generator.hidden_dim=24"]
    sets += ["--set=rendering.psi=0.4", "--set=rendering.fps=10"]
    result = train("--data", dataset, "--out", run, "--config", "tiny", *sets)
    assert result.exit_code == 0, result.output
    saved = json.loads((run / "config.json").read_text())
    assert saved["generator"]["hidden_dim"] == 24
    from aniportrait.checkpoint import load_generator, rendering_config

    generator, metadata, _ = load_generator(run / "generator.safetensors")
    assert generator.config == dataclasses.replace(TINY, hidden_dim=24)
    assert rendering_config(metadata) == RenderingConfig(psi=0.4, fps=10)  # the run's rendering section


def test_the_readmes_config_example_loads(tmp_path):
    readme = (pathlib.Path(__file__).resolve().parents[2] / "README.md").read_text()
    example = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "example.yaml"
    path.write_text(example)
    config = load_preset(path)
    assert config.generator == dataclasses.replace(SMALL, hidden_dim=96) and config.recon_steps == 3000
