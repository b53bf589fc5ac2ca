"""Our safetensors checkpoints (round trip, atomic writes, clear errors) and `convert-official` of the release's .pt.

The release's ``sshq512.pt`` is a plain state_dict with 244 keys (as read from it when this port was written): the
234 network tensors (our names unchanged), the smoother registered a second time as ``renderer.smooth_layer.*``, and
the 8 buffers of smplx's SMPLLayer as ``renderer.smpl_model.*``. The file is not available, so the tests build one
with the exact key names and shapes: random network weights, and SMPL buffers made from the procedural rig in
SMPLLayer layout.
"""

import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import save_file

import aniportrait.checkpoint as ckpt
from aniportrait.checkpoint import ID_BANK_KEY, VALID_INDEX_KEY, CheckpointError, load_generator, save_generator
from aniportrait.cli import main
from aniportrait.config import SSHQ512, TINY, GeneratorConfig
from aniportrait.convert import convert_official
from aniportrait.models.body import BodyModel
from aniportrait.models.generator import AniPortraitGenerator, init_planar_manifolds, sample_identity_latents
from aniportrait.models.rig import procedural_rig, rig_valid_index
from aniportrait.models.smpl_file import load_smpl_arrays

# -- helpers -------------------------------------------------------------------------------------------------------


def tiny_generator(seed: int = 0) -> AniPortraitGenerator:
    torch.manual_seed(seed)
    generator = AniPortraitGenerator(TINY)
    with torch.no_grad():  # every tensor random, so that a bitwise comparison means something
        for p in generator.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    return generator.eval()


def assert_same_state(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for key, value in a.items():
        assert value.dtype == b[key].dtype, key
        assert torch.equal(value, b[key]), key


def files_in(folder) -> set[str]:
    return {p.name for p in folder.iterdir()}


def one_line_error(result) -> str:
    """The CLI's bad-input contract: exit 2, no traceback, the message on one line starting with 'Error:'."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


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
    tensors, metadata = _contents(path)
    _rewrite(path, tensors, {**metadata, **change})
    with pytest.raises(CheckpointError, match=message):
        load_generator(path)


def test_load_metadata_without_config(saved):
    path, _ = saved
    tensors, metadata = _contents(path)
    del metadata["config"]
    _rewrite(path, tensors, metadata)
    with pytest.raises(CheckpointError, match="unreadable generator config"):
        load_generator(path)


@pytest.mark.parametrize("value", ["32", -1], ids=["str", "negative"])
def test_load_config_with_bad_value_types(saved, value):
    path, _ = saved
    tensors, metadata = _contents(path)
    _rewrite(path, tensors, {**metadata, "config": json.dumps({**json.loads(TINY.to_json()), "hidden_dim": value})})
    with pytest.raises(CheckpointError):
        load_generator(path)


def test_load_checkpoint_of_another_config(tmp_path):
    path = tmp_path / "tiny.safetensors"
    save_generator(path, tiny_generator())
    tensors, metadata = _contents(path)
    small = GeneratorConfig(**{**json.loads(TINY.to_json()), "hidden_dim": 48, "sr_up_channels": (8, 4)})
    _rewrite(path, tensors, {**metadata, "config": small.to_json()})
    with pytest.raises(CheckpointError, match="mis-shaped radiance_net"):
        load_generator(path)


def test_load_missing_tensor_names_it(saved):
    path, _ = saved
    tensors, metadata = _contents(path)
    del tensors["sample_net.output_layer.bias"]
    _rewrite(path, tensors, metadata)
    with pytest.raises(CheckpointError, match=r"missing sample_net\.output_layer\.bias"):
        load_generator(path)


def test_load_many_missing_tensors_are_summarised(saved):
    path, _ = saved
    tensors, metadata = _contents(path)
    dropped = sorted(k for k in tensors if k.startswith("sr_net."))
    tensors = {k: v for k, v in tensors.items() if k not in dropped}
    _rewrite(path, tensors, metadata)
    with pytest.raises(CheckpointError, match=rf"missing {dropped[0]}.* and {len(dropped) - 4} more") as err:
        load_generator(path)
    assert "\n" not in str(err.value)


def test_load_unexpected_tensor_names_it(saved):
    path, _ = saved
    tensors, metadata = _contents(path)
    tensors["renderer.smpl_model.v_template"] = torch.zeros(5, 3)
    _rewrite(path, tensors, metadata)
    with pytest.raises(CheckpointError, match=r"unexpected renderer\.smpl_model\.v_template"):
        load_generator(path)


def test_load_misshaped_tensor_names_it_and_both_shapes(saved):
    path, _ = saved
    tensors, metadata = _contents(path)
    shape = list(tensors["smoother.conv_block1.weight"].shape)
    tensors["smoother.conv_block1.weight"] = torch.zeros(shape[0] + 1, *shape[1:])
    _rewrite(path, tensors, metadata)
    with pytest.raises(CheckpointError, match=r"mis-shaped smoother\.conv_block1\.weight") as err:
        load_generator(path)
    assert str([shape[0] + 1, *shape[1:]]) in str(err.value) and str(shape) in str(err.value)


# -- the release's checkpoint --------------------------------------------------------------------------------------

SMPL_PREFIX = "renderer.smpl_model."
DUPLICATES = {
    "renderer.smooth_layer.conv_block1.weight": "smoother.conv_block1.weight",
    "renderer.smooth_layer.conv_block2.weight": "smoother.conv_block2.weight",
}
# smplx SMPLLayer buffers = the release's renderer.smpl_model.* (sshq512.pt), with dtypes.
RELEASE_SMPL = {
    "shapedirs": ((6890, 3, 10), torch.float32),
    "faces_tensor": ((13776, 3), torch.int64),
    "v_template": ((6890, 3), torch.float32),
    "J_regressor": ((24, 6890), torch.float32),
    "posedirs": ((207, 20670), torch.float32),
    "parents": ((24,), torch.int64),
    "lbs_weights": ((6890, 24), torch.float32),
    "vertex_joint_selector.extra_joints_idxs": ((21,), torch.int64),
}
NUM_KNN = 3595  # size of the release's valid_smpl_knn_index.npy
# SMPL vertex ids of smplx's 21 extra joints (smplx 0.1.28 defaults): nose, eyes, ears; toes, small toes, heels;
# fingertips.
SMPLX_EXTRA_JOINTS = (
    (332, 6260, 2800, 4071, 583)
    + (3216, 3226, 3387, 6617, 6624, 6787)
    + (2746, 2319, 2445, 2556, 2673, 6191, 5782, 5905, 6016, 6133)
)


@pytest.fixture(scope="module")
def smpl_source():
    """The procedural rig as SMPL arrays, with random pose correctives so that the posedirs layout is testable."""
    rig = procedural_rig()
    rng = np.random.default_rng(7)
    rig["posedirs"] = (rng.standard_normal(rig["posedirs"].shape) * 1e-3).astype(np.float32).astype(np.float64)
    return rig


def smpl_buffers(rig: dict) -> dict[str, torch.Tensor]:
    """SMPL arrays -> smplx SMPLLayer buffers, written out independently of smplx."""
    parents = rig["kintree_table"][0].astype(np.int64).copy()
    parents[0] = -1

    def f32(a):
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    return {
        "shapedirs": f32(rig["shapedirs"][:, :, :10]),
        "faces_tensor": torch.from_numpy(rig["f"].astype(np.int64)),
        "v_template": f32(rig["v_template"]),
        "J_regressor": f32(rig["J_regressor"]),
        "posedirs": f32(rig["posedirs"].reshape(-1, 207).T),  # [6890, 3, 207] -> [207, 20670]
        "parents": torch.from_numpy(parents),
        "lbs_weights": f32(rig["weights"]),
        "vertex_joint_selector.extra_joints_idxs": torch.tensor(SMPLX_EXTRA_JOINTS, dtype=torch.int64),
    }


def test_synthetic_smpl_buffers_are_exactly_smplx_layout(smpl_source):
    """Cross-check of the test's own fixture: smplx's SMPLLayer builds the same 8 buffers from the same arrays."""
    layer = BodyModel.from_arrays(smpl_source, rig_valid_index(smpl_source)).smpl_model
    reference = layer.state_dict()
    ours = smpl_buffers(smpl_source)
    assert list(reference) == list(RELEASE_SMPL)
    for key, (shape, dtype) in RELEASE_SMPL.items():
        assert tuple(ours[key].shape) == shape and ours[key].dtype == dtype, key
        assert torch.equal(ours[key], reference[key]), key


@pytest.fixture(scope="module")
def release(tmp_path_factory, smpl_source):
    """(folder, state_dict, path of sshq512.pt, path of the knn index, knn ids) of a synthetic release checkpoint."""
    folder = tmp_path_factory.mktemp("release")
    g = torch.Generator().manual_seed(0)
    network = AniPortraitGenerator(SSHQ512).state_dict()
    state = {k: torch.randn(v.shape, generator=g) * 0.05 for k, v in network.items()}
    for duplicate, original in DUPLICATES.items():
        state[duplicate] = state[original].clone()
    state.update({SMPL_PREFIX + k: v for k, v in smpl_buffers(smpl_source).items()})
    knn = np.sort(np.random.default_rng(1).choice(6890, NUM_KNN, replace=False)).astype(np.int64)
    torch.save(state, folder / "sshq512.pt")
    np.save(folder / "valid_smpl_knn_index.npy", knn)
    return folder, state, folder / "sshq512.pt", folder / "valid_smpl_knn_index.npy", knn


def test_synthetic_release_has_the_244_keys_and_shapes_of_the_spec(release):
    _, state, *_ = release
    assert len(state) == 244
    assert sum(1 for k in state if k.startswith(SMPL_PREFIX)) == 8
    assert sum(1 for k in state if k.startswith("renderer.smooth_layer.")) == 2
    network = {k: v for k, v in state.items() if not k.startswith("renderer.")}
    assert len(network) == 234
    counts = {}
    for key, value in network.items():
        counts[key.split(".")[0]] = counts.get(key.split(".")[0], 0) + value.numel()
    # Parameter counts per module in the release's sshq512.pt.
    assert counts == {
        "radiance_net": 1_949_948,
        "sample_net": 33_665,
        "deform_net": 185_607,
        "sr_net": 3_388_516,
        "smoother": 12_960,
    }
    for key, (shape, dtype) in RELEASE_SMPL.items():
        assert tuple(state[SMPL_PREFIX + key].shape) == shape and state[SMPL_PREFIX + key].dtype == dtype
    assert tuple(state["smoother.conv_block1.weight"].shape) == (16, 1, 5, 9, 9)
    assert tuple(state["radiance_net.mapping_network.network.6.weight"].shape) == (4608, 256)
    assert tuple(state["sr_net.conv_first.weight"].shape) == (64, 36, 3, 3)


def check_converted(path, state, knn, source="sshq512.pt"):
    generator, metadata, valid_index = load_generator(path)
    assert generator.config == SSHQ512
    ours = generator.state_dict()
    network = {k: v for k, v in state.items() if not k.startswith("renderer.")}
    assert set(ours) == set(network)
    for key, value in network.items():
        assert torch.equal(ours[key], value), key
    assert metadata["body"] == "smpl" and metadata["format"] == "aniportrait-generator"
    assert GeneratorConfig.from_json(metadata["config"]) == SSHQ512
    assert metadata["note"] == f"converted from {source}"
    assert valid_index.dtype == torch.int64 and np.array_equal(valid_index.numpy(), knn)
    with safe_open(path, framework="pt") as f:
        keys = set(f.keys())
    assert keys == set(network) | {VALID_INDEX_KEY}  # neither the duplicate nor the licensed SMPL arrays
    return generator, metadata


def test_convert_official_cli_round_trip(release, tmp_path):
    _, state, pt, knn_path, knn = release
    out, smpl_out = tmp_path / "model.safetensors", tmp_path / "smpl.npz"
    args = ["convert-official", str(pt), "--knn-index", str(knn_path), "-o", str(out), "--smpl-out", str(smpl_out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "234 network tensors" in result.output and "2 duplicated" in result.output
    assert "8 SMPL buffers" in result.output and str(smpl_out) in result.output
    assert files_in(tmp_path) == {"model.safetensors", "smpl.npz"}
    check_converted(out, state, knn)


def test_convert_official_function(release, tmp_path):
    _, state, pt, knn_path, knn = release
    out = tmp_path / "model.safetensors"
    counts = convert_official(pt, knn_path, out)
    assert counts == {"network": 234, "duplicates": 2, "smpl_buffers": 8, "id_bank_rows": 0}
    assert files_in(tmp_path) == {"model.safetensors"}
    check_converted(out, state, knn)


def test_convert_official_accepts_a_wrapped_state_dict(release, tmp_path):
    _, state, _, knn_path, knn = release
    pt = tmp_path / "wrapped.pt"
    torch.save({"generator_ema": state}, pt)
    convert_official(pt, knn_path, tmp_path / "model.safetensors")
    check_converted(tmp_path / "model.safetensors", state, knn, source="wrapped.pt")


def test_convert_official_reads_with_weights_only(release, tmp_path, monkeypatch):
    _, _, pt, knn_path, _ = release
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    convert_official(pt, knn_path, tmp_path / "model.safetensors")
    assert calls and all(c.get("weights_only") is True for c in calls)


def test_smpl_out_round_trips_the_buffers(release, tmp_path, smpl_source):
    _, state, pt, knn_path, knn = release
    smpl_out = tmp_path / "smpl.npz"
    convert_official(pt, knn_path, tmp_path / "model.safetensors", smpl_out=smpl_out)
    with np.load(smpl_out, allow_pickle=False) as npz:  # plain arrays, no pickle
        assert set(npz.files) >= {"v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f"}
    arrays = load_smpl_arrays(smpl_out)
    buffers = {k[len(SMPL_PREFIX) :]: v for k, v in state.items() if k.startswith(SMPL_PREFIX)}
    # posedirs: SMPL file layout [6890, 3, 207] vs the SMPLLayer buffer [207, 20670].
    assert arrays["posedirs"].shape == (6890, 3, 207)
    np.testing.assert_array_equal(
        arrays["posedirs"].transpose(2, 0, 1).reshape(207, 20670), buffers["posedirs"].numpy().astype(np.float64)
    )
    np.testing.assert_array_equal(arrays["posedirs"], smpl_source["posedirs"])
    np.testing.assert_array_equal(arrays["v_template"], buffers["v_template"].numpy())
    np.testing.assert_array_equal(arrays["shapedirs"], buffers["shapedirs"].numpy())
    np.testing.assert_array_equal(arrays["J_regressor"], buffers["J_regressor"].numpy())
    np.testing.assert_array_equal(arrays["weights"], buffers["lbs_weights"].numpy())
    np.testing.assert_array_equal(arrays["f"], buffers["faces_tensor"].numpy())
    np.testing.assert_array_equal(arrays["kintree_table"][0], buffers["parents"].numpy())
    np.testing.assert_array_equal(arrays["kintree_table"][1], np.arange(24))
    # Loaded as the body, the file rebuilds the checkpoint's SMPLLayer buffers bit for bit.
    body = BodyModel.from_file(smpl_out, knn)
    rebuilt = body.smpl_model.state_dict()
    for key, value in buffers.items():
        if key != "vertex_joint_selector.extra_joints_idxs":  # smplx's own constant, not part of the SMPL file
            assert torch.equal(rebuilt[key], value), key
    assert np.array_equal(body.valid_index.numpy(), knn)


def test_converted_checkpoint_needs_smpl_to_render(release, tmp_path, monkeypatch):
    _, _, pt, knn_path, _ = release
    out = tmp_path / "model.safetensors"
    convert_official(pt, knn_path, out, smpl_out=tmp_path / "smpl.npz")
    monkeypatch.delenv("ANIPORTRAIT_SMPL", raising=False)
    videos = tmp_path / "videos"
    result = CliRunner().invoke(main, ["render", "--checkpoint", str(out), "--device", "cpu", "--out", str(videos)])
    line = one_line_error(result)
    assert "SMPL" in line and "--smpl" in line
    assert not videos.exists()


def test_converted_checkpoint_with_smpl_out_reaches_the_renderer(release, tmp_path, monkeypatch):
    """`render --checkpoint converted --smpl smpl.npz` builds SSHQ512 with the SMPL body (rendering stubbed out)."""
    from aniportrait.render import video

    _, state, pt, knn_path, knn = release
    out, smpl_out = tmp_path / "model.safetensors", tmp_path / "smpl.npz"
    convert_official(pt, knn_path, out, smpl_out=smpl_out)
    seen = {}

    def fake_render_videos(generator, body, seeds, frames, out_dir, settings):
        seen.update(generator=generator, body=body, seeds=seeds, frames=len(frames))
        return []

    monkeypatch.setattr(video, "render_videos", fake_render_videos)
    args = ["render", "--checkpoint", str(out), "--smpl", str(smpl_out), "--device", "cpu", "--seeds", "1-2"]
    result = CliRunner().invoke(main, [*args, "--trajectory", "yaw", "--n-interval", "2", "--out", str(tmp_path / "v")])
    assert result.exit_code == 0, (result.output, result.exception)
    assert seen["generator"].config == SSHQ512 and seen["seeds"] == [1, 2] and seen["frames"] == 8
    assert np.array_equal(seen["body"].valid_index.numpy(), knn)
    v_template = state[SMPL_PREFIX + "v_template"]
    assert torch.equal(seen["body"].smpl_model.v_template, v_template)


# -- conversion failures -------------------------------------------------------------------------------------------


class Payload:
    """Unpickling an instance creates the file named in its state (the side effect weights_only must prevent)."""

    def __init__(self, path):
        self.path = str(path)

    def __setstate__(self, state):
        open(state["path"], "w").close()


class MkdirOnLoad:
    """Unpickling calls os.mkdir(path): pickled code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def _variant(state, name, sentinel):
    """A broken copy of the release state_dict and the message fragment its conversion must report."""
    s = dict(state)
    if name == "missing-network-key":
        del s["sr_net.conv_last.bias"]
        return s, "missing sr_net.conv_last.bias"
    if name == "missing-duplicate-smoother":
        del s["renderer.smooth_layer.conv_block2.weight"]
        return s, "missing renderer.smooth_layer.conv_block2.weight"
    if name == "missing-smpl-buffer":
        del s[SMPL_PREFIX + "posedirs"]
        return s, "missing renderer.smpl_model.posedirs"
    if name == "extra-key":
        s["renderer.extra.weight"] = torch.zeros(3)
        return s, "unexpected renderer.extra.weight"
    if name == "extra-smpl-buffer":
        s[SMPL_PREFIX + "betas"] = torch.zeros(1, 10)
        return s, "unexpected renderer.smpl_model.betas"
    if name == "misshaped-network-key":
        s["sample_net.output_layer.weight"] = torch.zeros(1, 64)
        return s, "sample_net.output_layer.weight has shape [1, 64], expected [1, 128]"
    if name == "misshaped-smpl-buffer":  # posedirs in the SMPL file layout instead of SMPLLayer's
        s[SMPL_PREFIX + "posedirs"] = torch.zeros(6890, 3, 207)
        return s, "renderer.smpl_model.posedirs has shape [6890, 3, 207], expected [207, 20670]"
    if name == "misshaped-duplicate":
        s["renderer.smooth_layer.conv_block1.weight"] = torch.zeros(16, 1, 5, 9)
        return s, "renderer.smooth_layer.conv_block1.weight has shape"
    if name == "duplicate-differs":
        s["renderer.smooth_layer.conv_block1.weight"] = s["smoother.conv_block1.weight"] + 1e-6
        return s, "renderer.smooth_layer.conv_block1.weight differs from smoother.conv_block1.weight"
    if name == "tiny-config":
        return dict(tiny_generator().state_dict()), "not the release's SSHQ512 generator"
    if name == "non-tensor-value":
        s["iteration"] = 100000
        return s, "expected a state_dict of tensors"
    if name == "not-a-dict":
        return [state["smoother.conv_block1.weight"]], "expected a state_dict of tensors"
    if name == "class-instance":
        s["extra"] = Payload(sentinel)
        return s, "refused"
    if name == "pickled-call":
        s["extra"] = MkdirOnLoad(sentinel)
        return s, "refused"
    if name == "function-reference":
        s["extra"] = os.system
        return s, "refused"
    raise AssertionError(name)


VARIANTS = [
    "missing-network-key",
    "missing-duplicate-smoother",
    "missing-smpl-buffer",
    "extra-key",
    "extra-smpl-buffer",
    "misshaped-network-key",
    "misshaped-smpl-buffer",
    "misshaped-duplicate",
    "duplicate-differs",
    "tiny-config",
    "non-tensor-value",
    "not-a-dict",
    "class-instance",
    "pickled-call",
    "function-reference",
]


def _convert_cli(tmp_path, pt, knn):
    out = tmp_path / "out.safetensors"
    args = ["convert-official", str(pt), "--knn-index", str(knn), "-o", str(out), "--smpl-out", str(tmp_path / "s.npz")]
    return CliRunner().invoke(main, args), out


@pytest.mark.parametrize("name", VARIANTS)
def test_convert_refuses_a_bad_state_dict(release, tmp_path, name):
    _, state, _, knn_path, _ = release
    sentinel = tmp_path / "code-ran"
    broken, fragment = _variant(state, name, sentinel)
    pt = tmp_path / "bad.pt"
    torch.save(broken, pt)
    result, _ = _convert_cli(tmp_path, pt, knn_path)
    line = one_line_error(result) if name not in ("class-instance", "pickled-call", "function-reference") else None
    if line is not None:
        assert fragment in line and "bad.pt" in line
    else:  # see test_refused_pickle_message_is_one_line for the one-line check of these
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert "Error: " in result.stderr and fragment in result.stderr
    assert not sentinel.exists()
    assert files_in(tmp_path) == {"bad.pt"}  # no output, no temporary file, no SMPL arrays


def test_the_refused_payloads_really_run_code_when_unpickled(tmp_path):
    """Control for the refusal tests: a plain (unsafe) load of the same files has the side effects."""
    for cls, sentinel in ((Payload, tmp_path / "a"), (MkdirOnLoad, tmp_path / "b")):
        torch.save({"extra": cls(sentinel)}, tmp_path / "evil.pt")
        torch.load(tmp_path / "evil.pt", weights_only=False)
        assert sentinel.exists()


def test_refused_pickle_message_is_one_line(release, tmp_path):
    knn_path = release[3]
    pt = tmp_path / "bad.pt"
    torch.save({"w": torch.zeros(1), "extra": Payload(tmp_path / "x")}, pt)
    result, _ = _convert_cli(tmp_path, pt, knn_path)
    line = one_line_error(result)
    assert "weights_only=False" not in result.stderr and "\x1b[" not in result.stderr
    assert "bad.pt" in line


def test_failed_checkpoint_write_leaves_no_smpl_arrays(release, tmp_path, monkeypatch):
    _, _, pt, knn_path, _ = release

    def failing_save(tensors, filename, metadata=None):
        raise DiskFull("no space left on device")

    monkeypatch.setattr(ckpt, "save_file", failing_save)
    with pytest.raises(DiskFull):
        convert_official(pt, knn_path, tmp_path / "out.safetensors", smpl_out=tmp_path / "smpl.npz")
    assert files_in(tmp_path) == set()


@pytest.mark.parametrize(
    "content",
    # Fixed bytes: some random garbage triggers the KeyError/IndexError bug below instead of a clean refusal.
    [b"", np.random.default_rng(0).bytes(2048), b"PK\x03\x04" + b"\x00" * 64],
    ids=["empty", "random", "broken-zip"],
)
def test_convert_refuses_unreadable_pt(release, tmp_path, content):
    _, _, _, knn_path, _ = release
    pt = tmp_path / "bad.pt"
    pt.write_bytes(content)
    result, _ = _convert_cli(tmp_path, pt, knn_path)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "Error: " in result.stderr and "bad.pt" in result.stderr
    assert files_in(tmp_path) == {"bad.pt"}


@pytest.mark.parametrize(
    "content", [b"hello world", np.random.default_rng(17).bytes(2048)], ids=["text-KeyError", "random-IndexError"]
)
def test_convert_refuses_any_garbage_pt(release, tmp_path, content):
    _, _, _, knn_path, _ = release
    pt = tmp_path / "bad.pt"
    pt.write_bytes(content)
    result, _ = _convert_cli(tmp_path, pt, knn_path)
    one_line_error(result)


def test_convert_truncated_release_file(release, tmp_path):
    _, _, pt, knn_path, _ = release
    bad = tmp_path / "bad.pt"
    with open(pt, "rb") as f:
        bad.write_bytes(f.read(1 << 20))
    result, _ = _convert_cli(tmp_path, bad, knn_path)
    assert "not a readable PyTorch checkpoint" in one_line_error(result)
    assert files_in(tmp_path) == {"bad.pt"}


def test_convert_missing_checkpoint(release, tmp_path):
    _, _, _, knn_path, _ = release
    result, _ = _convert_cli(tmp_path, tmp_path / "sshq512.pt", knn_path)
    assert "official checkpoint not found" in one_line_error(result)
    assert files_in(tmp_path) == set()


@pytest.mark.parametrize(
    ("index", "fragment"),
    [
        (np.array([5, 3, 9]), "sorted, unique"),
        (np.array([3, 3, 9]), "sorted, unique"),
        (np.array([0, 6890]), "within [0, 6890)"),
        (np.array([-1, 4]), "within [0, 6890)"),
        (np.array([1.0, 2.0]), "1-D integer array"),
        (np.arange(6).reshape(2, 3), "1-D integer array"),
        (np.zeros(0, np.int64), "1-D integer array"),
        (np.array([1, None], dtype=object), "not a readable .npy array"),
    ],
    ids=["unsorted", "duplicate", "too-large", "negative", "float", "2-D", "empty", "pickled"],
)
def test_convert_refuses_a_bad_knn_index(release, tmp_path, index, fragment):
    _, _, pt, _, _ = release
    knn = tmp_path / "knn.npy"
    np.save(knn, index, allow_pickle=True)
    result, _ = _convert_cli(tmp_path, pt, knn)
    line = one_line_error(result)
    assert fragment in line and "knn.npy" in line
    assert files_in(tmp_path) == {"knn.npy"}


def test_convert_missing_knn_index(release, tmp_path):
    _, _, pt, _, _ = release
    result, _ = _convert_cli(tmp_path, pt, tmp_path / "valid_smpl_knn_index.npy")
    assert "knn index file not found" in one_line_error(result)
    assert files_in(tmp_path) == set()


@pytest.mark.parametrize("which", ["out", "smpl-out"])
def test_convert_output_folder_must_exist(release, tmp_path, which):
    _, _, pt, knn_path, _ = release
    missing = tmp_path / "no" / "such"
    out = missing / "m.safetensors" if which == "out" else tmp_path / "m.safetensors"
    smpl = missing / "s.npz" if which == "smpl-out" else tmp_path / "s.npz"
    args = ["convert-official", str(pt), "--knn-index", str(knn_path), "-o", str(out), "--smpl-out", str(smpl)]
    result = CliRunner().invoke(main, args)
    assert "output folder does not exist" in one_line_error(result)
    assert files_in(tmp_path) == set()


def test_convert_help_lists_options():
    result = CliRunner().invoke(main, ["convert-official", "--help"])
    assert result.exit_code == 0
    for option in ("--knn-index", "--out", "--smpl-out", "--id-bank", "weights_only"):
        assert option in result.output


# -- the label bank ------------------------------------------------------------------------------------------------


def test_convert_official_stores_the_release_identity_bank(release, tmp_path):
    """--id-bank: the converted checkpoint draws [z_id, betas] from the bank and averages over it for truncation."""
    _, _, pt, knn_path, knn = release
    bank = np.random.default_rng(2).normal(size=(37, 90)).astype(np.float64)
    bank_path = tmp_path / "id_shape_sampler_body.npy"
    np.save(bank_path, bank)
    out = tmp_path / "model.safetensors"
    args = ["convert-official", str(pt), "--knn-index", str(knn_path), "-o", str(out), "--id-bank", str(bank_path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "identity bank of 37 rows stored" in result.output
    assert files_in(tmp_path) == {"model.safetensors", "id_shape_sampler_body.npy"}
    generator, _, valid_index = load_generator(out)
    assert np.array_equal(valid_index.numpy(), knn)
    torch.testing.assert_close(generator.id_bank, torch.from_numpy(bank).float(), rtol=0, atol=0)
    for seed in (0, 5, 11):
        z_id, _, betas = sample_identity_latents(SSHQ512, [seed], id_bank=generator.id_bank)
        assert (torch.cat([z_id, betas], 1) == generator.id_bank).all(dim=1).any(), "a seed picks a row of the bank"
    # The truncation averages come from the bank: a bank shifted by +1 moves the identity average.
    plain = generator.truncation_averages(generator.id_bank)["freq"]
    shifted = generator.truncation_averages(generator.id_bank + 1.0)["freq"]
    assert not torch.allclose(shifted, plain)
    torch.testing.assert_close(generator.truncation_averages(generator.id_bank)["freq"], plain)


@pytest.mark.parametrize(
    ("bank", "fragment"),
    [
        (np.zeros((4, 80), np.float32), "float [N, 90] identity bank"),
        (np.zeros(90, np.float32), "float [N, 90] identity bank"),
        (np.zeros((0, 90), np.float32), "float [N, 90] identity bank"),
        (np.zeros((3, 90), np.int64), "float [N, 90] identity bank"),
        (np.full((3, 90), np.nan, np.float32), "3 rows of the identity bank hold NaN"),
        (np.full((2, 90), 1e300), "2 rows of the identity bank hold NaN or infinity (or overflow float32)"),
        (np.array([1, None], dtype=object), "not a readable .npy array"),
    ],
    ids=["80-wide", "1-D", "empty", "integer", "nan", "overflow", "pickled"],
)
def test_convert_refuses_a_bad_id_bank(release, tmp_path, bank, fragment):
    _, _, pt, knn_path, _ = release
    bank_path = tmp_path / "bank.npy"
    np.save(bank_path, bank, allow_pickle=True)
    out = tmp_path / "out.safetensors"
    args = ["convert-official", str(pt), "--knn-index", str(knn_path), "-o", str(out), "--id-bank", str(bank_path)]
    result = CliRunner().invoke(main, args)
    line = one_line_error(result)
    assert fragment in line and "bank.npy" in line
    assert files_in(tmp_path) == {"bank.npy"}


def test_convert_refuses_a_missing_id_bank_and_an_output_over_it(release, tmp_path):
    _, _, pt, knn_path, _ = release
    base = ["convert-official", str(pt), "--knn-index", str(knn_path)]
    result = CliRunner().invoke(
        main, [*base, "-o", str(tmp_path / "o.safetensors"), "--id-bank", str(tmp_path / "b.npy")]
    )
    assert "identity bank not found" in one_line_error(result)
    bank = tmp_path / "bank.npy"
    np.save(bank, np.zeros((2, 90), np.float32))
    result = CliRunner().invoke(main, [*base, "-o", str(bank), "--id-bank", str(bank)])
    assert "would overwrite the input" in one_line_error(result)
    assert files_in(tmp_path) == {"bank.npy"}


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
    tensors, metadata = _contents(path)
    tensors[ID_BANK_KEY] = bank
    _rewrite(path, tensors, metadata)
    with pytest.raises(CheckpointError, match="labels.id_bank must be a finite"):
        load_generator(path)
