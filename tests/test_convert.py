"""`convert-official` of the release's ``sshq512.pt``.

The release's ``sshq512.pt`` is a plain state_dict with 244 keys (as read from it when this port was written): the
234 network tensors (our names unchanged), the smoother registered a second time as ``renderer.smooth_layer.*``, and
the 8 buffers of smplx's SMPLLayer as ``renderer.smpl_model.*``. The file is not available, so the tests build one
with the exact key names and shapes: random network weights, and SMPL buffers made from the procedural rig in
SMPLLayer layout.
"""

import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open

import aniportrait.checkpoint as ckpt
from aniportrait.checkpoint import VALID_INDEX_KEY, load_generator
from aniportrait.cli import main
from aniportrait.config import SSHQ512, GeneratorConfig
from aniportrait.convert import convert_official
from aniportrait.models.body import BodyModel
from aniportrait.models.generator import AniPortraitGenerator, sample_identity_latents
from aniportrait.models.rig import procedural_rig, rig_valid_index
from aniportrait.models.smpl_file import load_smpl_arrays
from tests.helpers import RELEASE_SMPL_BUFFERS as RELEASE_SMPL
from tests.helpers import error_line, tiny_generator

# -- helpers -------------------------------------------------------------------------------------------------------


def files_in(folder) -> set[str]:
    return {p.name for p in folder.iterdir()}


def one_line_error(result) -> str:
    """The CLI's bad-input contract (exit 2, no traceback, the message on one line starting with 'Error:'), with no
    exception but SystemExit."""
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    return error_line(result)


# -- the release's checkpoint --------------------------------------------------------------------------------------

SMPL_PREFIX = "renderer.smpl_model."
DUPLICATES = {
    "renderer.smooth_layer.conv_block1.weight": "smoother.conv_block1.weight",
    "renderer.smooth_layer.conv_block2.weight": "smoother.conv_block2.weight",
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
    assert metadata["face_model"] == "bfm"
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


class DiskFull(OSError):
    pass


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
