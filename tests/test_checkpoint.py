"""Our safetensors checkpoints: the bitwise round trip, atomic writes, the label bank, and clear load errors."""

import contextlib
import json
import os

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import aniportrait.checkpoint as ckpt
from aniportrait.checkpoint import (
    ID_BANK_KEY,
    CheckpointError,
    expression_meaning,
    load_generator,
    rendering_config,
    save_generator,
)
from aniportrait.config import TINY, GeneratorConfig, RenderingConfig
from aniportrait.models.body import BodyModel
from aniportrait.models.face3dmm import EXPRESSION_MEANING
from aniportrait.models.generator import init_planar_manifolds, sample_identity_latents
from tests.helpers import tiny_generator

# -- helpers -------------------------------------------------------------------------------------------------------


def assert_same_state(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for key, value in a.items():
        assert value.dtype == b[key].dtype, key
        assert torch.equal(value, b[key]), key


def files_in(folder) -> set[str]:
    return {p.name for p in folder.iterdir()}


# -- our checkpoints -----------------------------------------------------------------------------------------------


def test_save_load_round_trip_is_bitwise(tmp_path):
    generator = tiny_generator()
    valid = torch.from_numpy(np.array([3, 5, 8, 13, 21], np.int32))
    path = tmp_path / "tiny.safetensors"
    save_generator(path, generator, body="procedural", valid_index=valid, note="round trip")
    loaded, metadata, valid_index = load_generator(path)
    assert loaded.config == TINY and isinstance(loaded.config, GeneratorConfig)
    assert not loaded.training
    assert_same_state(generator.state_dict(), loaded.state_dict())
    assert valid_index.dtype == torch.int64 and valid_index.tolist() == [3, 5, 8, 13, 21]
    assert metadata == {
        "format": "aniportrait-generator",
        "version": "1",
        "config": TINY.to_json(),
        "body": "procedural",
        "face_model": "procedural",
        "note": "round trip",
    }
    assert GeneratorConfig.from_json(metadata["config"]) == TINY
    assert files_in(tmp_path) == {"tiny.safetensors"}  # no temporary file left behind


def test_saved_file_is_plain_safetensors_with_release_names(tmp_path):
    generator = tiny_generator()
    path = tmp_path / "tiny.safetensors"
    save_generator(path, generator)
    with safe_open(path, framework="pt") as f:
        keys = set(f.keys())
        assert f.metadata()["body"] == "procedural" and "note" not in f.metadata()
    assert keys == set(generator.state_dict())
    assert {k.split(".")[0] for k in keys} == {"radiance_net", "sample_net", "deform_net", "sr_net", "smoother"}
    assert not any("smpl" in k for k in keys)
    _, metadata, valid_index = load_generator(str(path))
    assert valid_index is None and metadata["body"] == "procedural"


def test_the_face_model_names_the_expression_coefficients(tmp_path):
    generator = tiny_generator()
    save_generator(tmp_path / "bfm.safetensors", generator, body="procedural", face_model="bfm")
    _, metadata, _ = load_generator(tmp_path / "bfm.safetensors")
    assert metadata["face_model"] == "bfm" and expression_meaning(metadata) == ()
    save_generator(tmp_path / "proc.safetensors", generator, body="smpl", valid_index=torch.arange(4))
    _, metadata, _ = load_generator(tmp_path / "proc.safetensors")
    assert expression_meaning(metadata) == EXPRESSION_MEANING
    # Files written before face_model was recorded: procedural body -> procedural 3DMM, SMPL (converted) -> BFM.
    assert expression_meaning({"body": "procedural"}) == EXPRESSION_MEANING
    assert expression_meaning({"body": "smpl"}) == ()
    with pytest.raises(ValueError, match="face_model"):
        save_generator(tmp_path / "x.safetensors", generator, face_model="flame")
    assert not (tmp_path / "x.safetensors").exists()


def test_the_rendering_settings_travel_in_the_metadata(tmp_path):
    generator = tiny_generator()
    settings = RenderingConfig(psi=0.35, n_interval=3, fps=12, precision="bf16")
    save_generator(tmp_path / "with.safetensors", generator, rendering=settings)
    save_generator(tmp_path / "without.safetensors", generator)
    _, metadata, _ = load_generator(tmp_path / "with.safetensors")
    assert rendering_config(metadata) == settings
    _, metadata, _ = load_generator(tmp_path / "without.safetensors")
    assert "rendering" not in metadata and rendering_config(metadata) == RenderingConfig()


def test_loaded_generator_renders_like_the_saved_one(tmp_path):
    generator = tiny_generator()
    init_planar_manifolds(generator)
    path = tmp_path / "tiny.safetensors"
    save_generator(path, generator, body="smpl", valid_index=torch.arange(10))
    loaded, metadata, _ = load_generator(path)
    assert metadata["body"] == "smpl"
    body = BodyModel.procedural()
    camera = torch.tensor([[1.5, 1.7]])
    args = (body, [3], camera, torch.zeros(1, 6, 3), torch.zeros(1, 64))
    with torch.no_grad():
        a, b = generator.generate(*args, impl="ref", psi=1), loaded.generate(*args, impl="ref", psi=1)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_save_rejects_unknown_body(tmp_path):
    with pytest.raises(ValueError, match="body must be"):
        save_generator(tmp_path / "x.safetensors", tiny_generator(), body="smplx")
    assert files_in(tmp_path) == set()


class DiskFull(OSError):
    pass


@pytest.mark.parametrize("partial", [False, True], ids=["raise", "write-then-raise"])
@pytest.mark.parametrize("error", [DiskFull, KeyboardInterrupt])
def test_failed_save_leaves_neither_target_nor_temp_file(tmp_path, monkeypatch, partial, error):
    def failing_save(tensors, filename, metadata=None):
        if partial:
            with open(filename, "wb") as f:
                f.write(b"\x00" * 1000)
        raise error("no space left on device")

    monkeypatch.setattr(ckpt, "save_file", failing_save)
    with pytest.raises(error):
        save_generator(tmp_path / "tiny.safetensors", tiny_generator())
    assert files_in(tmp_path) == set()


def test_failed_overwrite_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "tiny.safetensors"
    save_generator(path, tiny_generator(0))
    before = path.read_bytes()

    def failing_save(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise DiskFull("no space left on device")

    monkeypatch.setattr(ckpt, "save_file", failing_save)
    with pytest.raises(DiskFull):
        save_generator(path, tiny_generator(1))
    assert path.read_bytes() == before
    assert files_in(tmp_path) == {"tiny.safetensors"}


def test_save_writes_a_temporary_file_in_the_same_folder_then_renames(tmp_path, monkeypatch):
    target = tmp_path / "tiny.safetensors"
    seen = []

    def spy(tensors, filename, metadata=None):
        seen.append(filename)
        assert not target.exists()  # the target never exists half-written
        staging_folder = os.path.dirname(os.path.abspath(filename))  # beside the target: the rename is atomic
        assert os.path.dirname(staging_folder) == str(tmp_path) and os.path.basename(staging_folder).startswith(".tmp-")
        assert os.path.abspath(filename) != str(target)
        save_file(tensors, filename, metadata=metadata)

    monkeypatch.setattr(ckpt, "save_file", spy)
    save_generator(target, tiny_generator())
    assert len(seen) == 1 and not os.path.exists(seen[0])
    assert files_in(tmp_path) == {"tiny.safetensors"}
    load_generator(target)


# -- load errors ---------------------------------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    generator = tiny_generator()
    path = tmp_path / "tiny.safetensors"
    save_generator(path, generator, valid_index=torch.arange(4))
    return path, generator


def _rewrite(path, tensors, metadata):
    save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata=metadata)


def _contents(path):
    with safe_open(path, framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())


@contextlib.contextmanager
def _edited(path):
    """Yield the file's tensors and metadata (dicts, to change in place); write them back to ``path`` on exit."""
    tensors, metadata = _contents(path)
    yield tensors, metadata
    _rewrite(path, tensors, metadata)


def test_load_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found") as err:
        load_generator(tmp_path / "nope.safetensors")
    assert "nope.safetensors" in str(err.value)


@pytest.mark.parametrize(
    "content",
    [b"", b"definitely not safetensors", np.random.default_rng(0).bytes(4096), b"\xff" * 8 + b"{}"],
    ids=["empty", "text", "random", "huge-header"],
)
def test_load_non_safetensors_bytes(tmp_path, content):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_generator(path)


def test_load_truncated_checkpoint(saved):
    path, _ = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_generator(path)


def test_load_official_pt_points_at_convert_official(tmp_path):
    path = tmp_path / "sshq512.pt"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="convert-official"):
        load_generator(path)


def test_load_foreign_safetensors_without_our_metadata(tmp_path, saved):
    _, generator = saved
    for metadata in (None, {"format": "pt"}):
        path = tmp_path / "foreign.safetensors"
        _rewrite(path, generator.state_dict(), metadata)
        with pytest.raises(CheckpointError, match="not an aniportrait generator checkpoint"):
            load_generator(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": "2"}, "version '2' is not supported"),
        ({"config": "{not json"}, "unreadable generator config"),
        ({"config": json.dumps({**json.loads(TINY.to_json()), "width": 3})}, "unknown generator config keys: width"),
        ({"config": json.dumps({**json.loads(TINY.to_json()), "hr_img_size": 65})}, "hr_img_size must be 4"),
    ],
    ids=["version", "json", "unknown-key", "invalid"],
)
def test_load_bad_metadata(saved, change, message):
    path, _ = saved
    with _edited(path) as (_, metadata):
        metadata.update(change)
    with pytest.raises(CheckpointError, match=message):
        load_generator(path)


@pytest.mark.parametrize(
    ("rendering", "message"),
    [
        ("{not json", "unreadable rendering settings"),
        (json.dumps({"psi": 2.0}), "psi=2.0 must be a number in"),
        (json.dumps({"speed": 2}), "unknown rendering config keys: speed"),
        (json.dumps([0.7]), "must be a mapping"),
    ],
    ids=["json", "range", "unknown-key", "not-a-mapping"],
)
def test_load_bad_rendering_settings(saved, rendering, message):
    path, _ = saved
    with _edited(path) as (_, metadata):
        metadata["rendering"] = rendering
    with pytest.raises(CheckpointError, match=message) as err:
        load_generator(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_load_metadata_without_config(saved):
    path, _ = saved
    with _edited(path) as (_, metadata):
        del metadata["config"]
    with pytest.raises(CheckpointError, match="unreadable generator config"):
        load_generator(path)


@pytest.mark.parametrize("value", ["32", -1], ids=["str", "negative"])
def test_load_config_with_bad_value_types(saved, value):
    path, _ = saved
    with _edited(path) as (_, metadata):
        metadata["config"] = json.dumps({**json.loads(TINY.to_json()), "hidden_dim": value})
    with pytest.raises(CheckpointError):
        load_generator(path)


def test_load_checkpoint_of_another_config(tmp_path):
    path = tmp_path / "tiny.safetensors"
    save_generator(path, tiny_generator())
    small = GeneratorConfig(**{**json.loads(TINY.to_json()), "hidden_dim": 48, "sr_up_channels": (8, 4)})
    with _edited(path) as (_, metadata):
        metadata["config"] = small.to_json()
    with pytest.raises(CheckpointError, match="mis-shaped radiance_net"):
        load_generator(path)


def test_load_missing_tensor_names_it(saved):
    path, _ = saved
    with _edited(path) as (tensors, _):
        del tensors["sample_net.output_layer.bias"]
    with pytest.raises(CheckpointError, match=r"missing sample_net\.output_layer\.bias"):
        load_generator(path)


def test_load_many_missing_tensors_are_summarised(saved):
    path, _ = saved
    with _edited(path) as (tensors, _):
        dropped = sorted(k for k in tensors if k.startswith("sr_net."))
        for key in dropped:
            del tensors[key]
    with pytest.raises(CheckpointError, match=rf"missing {dropped[0]}.* and {len(dropped) - 4} more") as err:
        load_generator(path)
    assert "\n" not in str(err.value)


def test_load_unexpected_tensor_names_it(saved):
    path, _ = saved
    with _edited(path) as (tensors, _):
        tensors["renderer.smpl_model.v_template"] = torch.zeros(5, 3)
    with pytest.raises(CheckpointError, match=r"unexpected renderer\.smpl_model\.v_template"):
        load_generator(path)


def test_load_misshaped_tensor_names_it_and_both_shapes(saved):
    path, _ = saved
    with _edited(path) as (tensors, _):
        shape = list(tensors["smoother.conv_block1.weight"].shape)
        tensors["smoother.conv_block1.weight"] = torch.zeros(shape[0] + 1, *shape[1:])
    with pytest.raises(CheckpointError, match=r"mis-shaped smoother\.conv_block1\.weight") as err:
        load_generator(path)
    assert str([shape[0] + 1, *shape[1:]]) in str(err.value) and str(shape) in str(err.value)


# -- the label bank ------------------------------------------------------------------------------------------------


def test_id_bank_round_trips_and_drives_identity_sampling(tmp_path):
    generator = tiny_generator()
    width = TINY.z_id_dim + TINY.betas_dim
    generator.id_bank = torch.randn(5, width)
    path = tmp_path / "bank.safetensors"
    save_generator(path, generator)
    assert ID_BANK_KEY in _contents(path)[0]
    loaded, _, _ = load_generator(path)
    assert torch.equal(loaded.id_bank, generator.id_bank)
    z_id, _, betas = sample_identity_latents(TINY, [3], id_bank=loaded.id_bank)
    rows = torch.cat([z_id, betas], dim=1)
    assert (rows == loaded.id_bank).all(dim=1).any(), "a seed picks one row of the bank"
    # Without a bank a checkpoint loads with none (the N(0, I) prior).
    save_generator(tmp_path / "plain.safetensors", tiny_generator())
    assert load_generator(tmp_path / "plain.safetensors")[0].id_bank is None


@pytest.mark.parametrize(
    "bank", [torch.randn(4, 7), torch.randn(0, 90), torch.full((2, 90), float("nan")), torch.randn(90)]
)
def test_load_rejects_a_bad_id_bank(saved, bank):
    path, _ = saved
    with _edited(path) as (tensors, _):
        tensors[ID_BANK_KEY] = bank
    with pytest.raises(CheckpointError, match="labels.id_bank must be a finite"):
        load_generator(path)


def test_loading_leaves_the_global_rng_alone(tmp_path):
    save_generator(tmp_path / "g.safetensors", tiny_generator())
    before = torch.get_rng_state()
    load_generator(tmp_path / "g.safetensors")
    assert torch.equal(torch.get_rng_state(), before)
