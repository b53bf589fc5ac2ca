"""The bad-input battery of every command but `train`: each case must end with exit code 2, exactly one line on
stderr that starts with "Error: " and says what is wrong (a phrase the case names), no traceback, and nothing
written: the inputs folder and the output folder are byte-for-byte as before.

Cases are grouped by command: every float and integer option with NaN, infinity, negative, zero, huge, empty and
wrong-type values; every file argument with a missing file, a folder, an empty file, a truncated file and a file of
another format; every output path that cannot be written. Validation happens before any model loads, or, where a
model is needed, on the tiny generator of tests/conftest.py standing in for the built-in default.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from aniportrait import pretrained
from aniportrait.checkpoint import save_generator
from aniportrait.cli import main
from aniportrait.render import keyframes as kf
from tests.helpers import error_line


class RunsCodeWhenUnpickled:
    """Unpickling this creates the folder ``path``: a stand-in for malicious code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


@dataclass(frozen=True)
class Case:
    """A command line (``{in}`` = the inputs folder, ``{out}`` = an empty output folder) and the phrases its error
    line must contain."""

    id: str
    args: list[str]
    fragments: list[str]
    env: dict[str, str] = field(default_factory=dict)


# -- inputs --------------------------------------------------------------------------------------------------------


def _fake_npy_header(path: Path, shape: tuple[int, ...]) -> None:
    """A .npy file whose header announces ``shape`` (float32) but that holds no data."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": shape})


def _save(folder: Path, name: str, array: np.ndarray) -> None:
    np.save(folder / name, array, allow_pickle=array.dtype == object)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, generator) -> Path:
    """Every input file of the battery, good and bad, in one folder that no case may change."""
    folder = tmp_path_factory.mktemp("inputs")
    (folder / "folder").mkdir()
    (folder / "emptydir").mkdir()
    (folder / "empty").write_bytes(b"")
    (folder / "text.txt").write_text("hello world\n")
    good = {
        "expression": np.zeros((2, 64), np.float32),
        "pose": np.zeros((2, 6, 3), np.float32),
        "camera": np.array([[1.5, 1.5], [1.6, 1.7]], np.float32),
    }
    wrong_shape = {"expression": (2, 63), "pose": (2, 18), "camera": (2, 3)}
    for kind, array in good.items():
        _save(folder, f"{kind}.npy", array)
        _save(folder, f"{kind}-shape.npy", np.zeros(wrong_shape[kind], np.float32))
        for name, bad in (("nan", np.nan), ("inf", np.inf)):
            broken = array.copy()
            broken.flat[1] = bad
            _save(folder, f"{kind}-{name}.npy", broken)
        _save(folder, f"{kind}-bool.npy", np.ones(array.shape, bool))
        _save(folder, f"{kind}-str.npy", np.full(array.shape, "a"))
        _fake_npy_header(folder / f"{kind}-rows.npy", (1_000_001, *array.shape[1:]))
    _save(folder, "expression-3rows.npy", np.zeros((3, 64), np.float32))
    _save(folder, "camera-200rows.npy", np.tile(good["camera"][:1], (200, 1)))
    ranges = {
        "camera-pitch0": ("camera", (0, 0), 0.0),
        "camera-pitch-pi": ("camera", (1, 0), 3.2),
        "camera-yaw30": ("camera", (0, 1), 1e30),
        "camera-yaw300": ("camera", (1, 1), 1e300),
        "pose-4": ("pose", (1, 3, 2), 4.0),
        "expression-1e6": ("expression", (0, 5), 1e6),
        "expression-neg11": ("expression", (1, 0), -11.0),
    }
    for name, (kind, index, value) in ranges.items():
        array = good[kind].astype(np.float64)
        array[index] = value
        _save(folder, f"{name}.npy", array)
    full = np.zeros((10, 64), np.float32)
    np.save(folder / "trunc.npy", full)
    (folder / "trunc.npy").write_bytes((folder / "trunc.npy").read_bytes()[:-100])
    np.savez(folder / "arr.npz", a=np.zeros(3))
    _save(folder, "obj.npy", np.array([RunsCodeWhenUnpickled(folder.parent / "code-ran")], dtype=object))
    torch.save({"w": torch.zeros(2)}, folder / "weights.pt")
    torch.save({"w": torch.zeros(1), "x": RunsCodeWhenUnpickled(folder.parent / "code-ran")}, folder / "payload.pt")
    torch.save({f"w{i}": torch.randn(256) for i in range(8)}, folder / "big.pt")
    (folder / "trunc.pt").write_bytes((folder / "big.pt").read_bytes()[:3000])
    save_generator(folder / "ckpt.safetensors", generator)
    save_generator(folder / "smpl.safetensors", generator, body="smpl", valid_index=torch.arange(100))
    data = (folder / "ckpt.safetensors").read_bytes()
    (folder / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    np.save(folder / "knn.npy", np.arange(0, 6890, 2))
    _save(folder, "knn-float.npy", np.arange(5, dtype=np.float64))
    _save(folder, "knn-2d.npy", np.arange(6).reshape(2, 3))
    _save(folder, "knn-unsorted.npy", np.array([5, 3, 9]))
    _save(folder, "knn-rows.npy", np.arange(7000))
    return folder


@pytest.fixture(autouse=True)
def tiny_default(monkeypatch, generator):
    """The built-in default replaced by the tiny generator; no ambient ANIPORTRAIT_* settings."""

    def builtin_generator(device="cpu"):
        return generator.to(device).eval(), {"body": "procedural", "note": "tiny test default"}, None

    monkeypatch.setattr(pretrained, "builtin_generator", builtin_generator)
    for name in ("ANIPORTRAIT_IMPL", "ANIPORTRAIT_SMPL"):
        monkeypatch.delenv(name, raising=False)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder below ``folder``, hidden ones included, with size and modification time."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            stat = os.stat(path)
            found[os.path.relpath(path, folder)] = (stat.st_size if name in files else 0, stat.st_mtime_ns)
    return found


def invoke(args: list[str], inputs: Path, out: Path, env: dict[str, str] | None = None):
    args = [a.replace("{in}", str(inputs)).replace("{out}", str(out)) for a in args]
    return CliRunner().invoke(main, args, env=env or {})


def refused(result, fragments: list[str]) -> str:
    """The bad-input contract, with no exception but SystemExit; returns the error line."""
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return error_line(result, *fragments)


def check_case(case: Case, inputs: Path, tmp_path: Path) -> str:
    out = tmp_path / "out"
    out.mkdir()
    before = snapshot(inputs), snapshot(tmp_path)
    line = refused(invoke(case.args, inputs, out, case.env), case.fragments)
    assert (snapshot(inputs), snapshot(tmp_path)) == before, "a refused command wrote something"
    assert not (inputs.parent / "code-ran").exists(), "pickled code ran"
    return line


# -- render --------------------------------------------------------------------------------------------------------

RENDER = ["render", "--device", "cpu", "--n-interval", "1", "--quiet", "--out", "{out}/videos"]


def _render(id: str, extra: list[str], fragments: list[str], env=None) -> Case:
    return Case(id, RENDER + extra, fragments, env or {})


def _number_cases(command: list[str], option: str, values: dict[str, str], fragments: list[str]) -> list[Case]:
    return [Case(f"{option[2:]}-{name}", [*command, option, value], fragments) for name, value in values.items()]


NON_FINITE = {"nan": "nan", "inf": "inf", "neg-inf": "-inf", "NaN-caps": "NaN"}
NOT_A_NUMBER = {"empty": "", "text": "abc", "list": "1,2"}
NOT_AN_INT = {"float": "1.5", "exponent": "1e3", "nan": "nan", "inf": "inf", "empty": "", "text": "abc"}


def _keyframe_file_cases(kind: str) -> list[Case]:
    shape = kf.SHAPE_TEXT[kind]
    files = {
        "missing": ("nope.npy", [f"{kind} keyframe file not found", "nope.npy"]),
        "folder": ("folder", ["is a directory"]),
        "empty": ("empty", ["the file is empty"]),
        "text": ("text.txt", ["text.txt", "no numpy header"]),
        "truncated": ("trunc.npy", ["trunc.npy", "not a readable .npy array"]),
        "npz": ("arr.npz", ["arr.npz", ".npz archive"]),
        "pytorch": ("weights.pt", ["weights.pt", "PyTorch file"]),
        "pickled": ("obj.npy", ["obj.npy", "never unpickled"]),
        "shape": (f"{kind}-shape.npy", [f"{kind}-shape.npy", shape]),
        "nan": (f"{kind}-nan.npy", ["NaN or infinite"]),
        "inf": (f"{kind}-inf.npy", ["NaN or infinite"]),
        "bool": (f"{kind}-bool.npy", ["numeric array"]),
        "strings": (f"{kind}-str.npy", ["numeric array"]),
        "too-many-rows": (f"{kind}-rows.npy", ["1,000,001 rows", "at most 100,000"]),
    }
    return [_render(f"{kind}-{name}", [f"--{kind}", "{in}/" + file], frags) for name, (file, frags) in files.items()]


RENDER_CASES = [
    *_number_cases(RENDER, "--psi", NON_FINITE, ["--psi", "not a finite number", "--help"]),
    *_number_cases(RENDER, "--psi", NOT_A_NUMBER, ["--psi", "not a valid float"]),
    *_number_cases(RENDER, "--psi", {"above": "1.5", "negative": "-0.1", "huge": "1e300"}, ["--psi", "range"]),
    *_number_cases(RENDER, "--n-interval", NOT_AN_INT, ["--n-interval", "not a valid integer"]),
    *_number_cases(RENDER, "--n-interval", {"zero": "0", "neg": "-1", "huge": "1001", "huger": "9" * 30}, ["range"]),
    *_number_cases(RENDER, "--fps", NOT_AN_INT, ["--fps", "not a valid integer"]),
    *_number_cases(RENDER, "--fps", {"zero": "0", "negative": "-1", "huge": "241"}, ["--fps", "range"]),
    *_number_cases(RENDER, "--contact-sheet", NOT_AN_INT, ["--contact-sheet", "not a valid integer"]),
    *_number_cases(RENDER, "--contact-sheet", {"negative": "-1", "huge": "65"}, ["--contact-sheet", "range"]),
    *[
        _render(f"seeds-{name}", ["--seeds", text], ["bad seed list", "0,1,4-6"])
        for name, text in {
            "empty": "",
            "comma": ",",
            "nan": "nan",
            "inf": "inf",
            "negative": "-1",
            "backwards": "3-1",
            "underscore": "1_0",
            "float": "1.5",
            "exponent": "1e3",
            "hex": "0x10",
            "spaces-inside": "1 2",
        }.items()
    ],
    _render("seeds-over-100000-in-two-ranges", ["--seeds", "0-99999,100000-199999"], ["at most 100,000 per run"]),
    _render("seeds-range-of-100001", ["--seeds", "0-100000"], ["at most 100,000 per run"]),
    _render("seeds-too-large", ["--seeds", "4294967296"], ["at most 4294967295"]),
    _render("seeds-huge", ["--seeds", "9" * 30], ["at most 4294967295"]),
    _render("trajectory-unknown", ["--trajectory", "spin"], ["--trajectory"]),
    _render("trajectory-and-file", ["--trajectory", "yaw", "--camera", "{in}/camera.npy"], ["not both"]),
    _render("device-empty", ["--device", ""], ["--device", "unknown device"]),
    _render("device-name", ["--device", "gpu0"], ["--device gpu0", "unknown device"]),
    _render("device-negative", ["--device", "cuda:-1"], ["--device cuda:-1"]),
    _render("device-meta", ["--device", "meta"], ["only cpu and cuda"]),
    _render("impl-unknown", ["--impl", "cuda"], ["--impl"]),
    _render(
        "env-impl-unknown",
        [],
        ["unknown impl 'bogus' from $ANIPORTRAIT_IMPL", "unset it"],
        {"ANIPORTRAIT_IMPL": "bogus"},
    ),
    *[case for kind in ("expression", "pose", "camera") for case in _keyframe_file_cases(kind)],
    _render("camera-pitch-zero", ["--camera", "{in}/camera-pitch0.npy"], ["camera pitch 0 at keyframe 0", "(0, pi)"]),
    _render("camera-pitch-above-pi", ["--camera", "{in}/camera-pitch-pi.npy"], ["camera pitch 3.2 at keyframe 1"]),
    _render("camera-yaw-1e30", ["--camera", "{in}/camera-yaw30.npy"], ["camera yaw 1e+30", "[pi/2 - pi, pi/2 + pi]"]),
    _render("camera-yaw-1e300", ["--camera", "{in}/camera-yaw300.npy"], ["camera-yaw300.npy: camera yaw 1e+300"]),
    _render(
        "pose-beyond-pi",
        ["--pose", "{in}/pose-4.npy"],
        ["pose Euler offset 4 at keyframe 1, index [3, 2]", "[-pi, pi]"],
    ),
    _render(
        "expression-1e6", ["--expression", "{in}/expression-1e6.npy"], ["expression coefficient 1e+06", "[-10, 10]"]
    ),
    _render("expression-below", ["--expression", "{in}/expression-neg11.npy"], ["expression coefficient -11"]),
    _render(
        "keyframe-lengths-disagree",
        ["--expression", "{in}/expression-3rows.npy", "--camera", "{in}/camera.npy"],
        ["expression has 3", "camera has 2"],
    ),
    _render(
        "frames-over-100000",
        ["--camera", "{in}/camera-200rows.npy", "--n-interval", "1000"],
        ["200 keyframes x --n-interval 1000 = 200,000 frames", "at most 100,000"],
    ),
    _render("frames-video-trajectory", ["--trajectory", "video", "--n-interval", "1000"], ["125,000 frames"]),
    _render("checkpoint-missing", ["--checkpoint", "{in}/nope.safetensors"], ["checkpoint not found"]),
    _render("checkpoint-folder", ["--checkpoint", "{in}/folder"], ["--checkpoint", "is a directory"]),
    _render("checkpoint-empty", ["--checkpoint", "{in}/empty"], ["not a readable safetensors file"]),
    _render("checkpoint-text", ["--checkpoint", "{in}/text.txt"], ["not a readable safetensors file"]),
    _render("checkpoint-truncated", ["--checkpoint", "{in}/trunc.safetensors"], ["not a readable safetensors file"]),
    _render("checkpoint-pytorch", ["--checkpoint", "{in}/weights.pt"], ["convert-official"]),
    _render("checkpoint-npy", ["--checkpoint", "{in}/camera.npy"], ["not a readable safetensors file"]),
    _render("checkpoint-empty-path", ["--checkpoint", ""], ["--checkpoint", "the path is empty"]),
    _render("smpl-checkpoint-without-smpl", ["--checkpoint", "{in}/smpl.safetensors"], ["SMPL", "--smpl"]),
    *[
        _render(f"smpl-{name}", ["--checkpoint", "{in}/smpl.safetensors", "--smpl", "{in}/" + file], fragments)
        for name, (file, fragments) in {
            "missing": ("SMPL_NEUTRAL.pkl", ["SMPL file not found"]),
            "folder": ("folder", ["--smpl", "is a directory"]),
            "empty": ("empty", ["cannot read SMPL file"]),
            "text": ("text.txt", ["cannot read SMPL file"]),
            "pytorch": ("weights.pt", ["cannot read SMPL file"]),
            "npz-without-smpl-keys": ("arr.npz", ["lacks the SMPL keys"]),
        }.items()
    ],
    _render("smpl-with-procedural-checkpoint", ["--smpl", "{in}/arr.npz"], ["--smpl", "procedural"]),
    _render(
        "out-under-a-file", ["--out", "{in}/text.txt/videos"], ["cannot write to --out", "is a file, not a folder"]
    ),
    _render("out-is-a-file", ["--out", "{in}/text.txt"], ["--out", "is a file"]),
    _render("out-empty-path", ["--out", ""], ["--out", "the path is empty"]),
    _render(
        "contact-sheet-too-big", ["--seeds", "0-9999", "--contact-sheet", "64"], ["megapixel", "at most 268", "seeds"]
    ),
    _render("precision-unknown", ["--precision", "fp16"], ["--precision", "'fp16' is not one of"]),
    _render("sr-precision-unknown", ["--sr-precision", "fp16"], ["--sr-precision", "'fp16' is not one of"]),
    _render("flag-with-a-value", ["--png=yes"], ["--png", "does not take a value"]),
    _render("unknown-option", ["--bogus"], ["No such option '--bogus'"]),
    _render("extra-argument", ["video.mp4"], ["unexpected extra argument"]),
]


@pytest.mark.parametrize("case", RENDER_CASES, ids=lambda c: c.id)
def test_render_refuses(case, inputs, tmp_path):
    check_case(case, inputs, tmp_path)


def test_render_without_cuda_refuses_cuda(inputs, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available")
    check_case(_render("device-cuda", ["--device", "cuda"], ["no CUDA device", "--device cpu"]), inputs, tmp_path)


def test_render_refuses_forced_triton_that_cannot_run(inputs, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available")
    env = {"ANIPORTRAIT_IMPL": "triton", "TRITON_INTERPRET": "0"}
    check_case(_render("env-impl-triton", [], ["$ANIPORTRAIT_IMPL=triton", "CUDA"], env), inputs, tmp_path)


def test_render_out_of_range_camera_leaks_no_numpy_warning(inputs, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_case(_render("yaw-1e300", ["--camera", "{in}/camera-yaw300.npy"], ["yaw 1e+300"]), inputs, tmp_path)
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]


def test_render_missing_out_is_one_line(inputs, tmp_path):
    check_case(Case("no-out", ["render", "--device", "cpu"], ["Missing option '--out'"]), inputs, tmp_path)


# -- eval ----------------------------------------------------------------------------------------------------------

EVAL = ["eval", "--device", "cpu", "--data", "{in}/emptydir", "--metrics", "control", "--num", "2"]


def _eval(id: str, extra: list[str], fragments: list[str], env=None) -> Case:
    return Case(id, EVAL + extra, fragments, env or {})


def _inception(id: str, file: str, fragments: list[str]) -> Case:
    return _eval(f"inception-{id}", ["--inception", "{in}/" + file], fragments)


EVAL_CASES = [
    _eval("metrics-comma", ["--metrics", ","], ["--metrics", "names no metric"]),
    _eval("metrics-empty", ["--metrics", ""], ["--metrics", "names no metric"]),
    _eval("metrics-spaces", ["--metrics", " , "], ["names no metric"]),
    _eval("metrics-unknown", ["--metrics", "bogus"], ["unknown metrics bogus"]),
    _eval("metrics-one-unknown", ["--metrics", "control,nope"], ["unknown metrics nope"]),
    _inception("missing", "nope.pth", ["Inception weights not found", "nope.pth"]),
    _inception("folder", "folder", ["--inception", "is a directory"]),
    _inception("empty", "empty", ["the file is empty"]),
    _inception("text", "text.txt", ["text.txt: not a safely loadable torch state_dict", "another format"]),
    _inception("truncated", "trunc.pt", ["trunc.pt", "damaged or another format"]),
    _inception("npy", "camera.npy", ["numpy .npy array"]),
    _inception("npz", "arr.npz", ["arr.npz", "damaged or another format"]),
    _inception("other-weights", "weights.pt", ["not the FID Inception weights"]),
    _inception("pickled-code", "payload.pt", ["refused", "pickled objects"]),
    _eval("inception-empty-path", ["--inception", ""], ["the path is empty"]),
    _eval("json-under-a-file", ["--json", "{in}/text.txt/r.json"], ["--json", "is a file, not a folder"]),
    _eval("json-folder-missing", ["--json", "{out}/no/r.json"], ["output folder does not exist"]),
    _eval("json-is-a-folder", ["--json", "{in}/folder"], ["--json", "is a directory"]),
    _eval("json-empty-path", ["--json", ""], ["the path is empty"]),
    _eval(
        "json-overwrites-checkpoint",
        ["--checkpoint", "{in}/ckpt.safetensors", "--json", "{in}/ckpt.safetensors"],
        ["would overwrite the input"],
    ),
    *_number_cases(EVAL, "--num", NOT_AN_INT, ["--num", "not a valid integer"]),
    *_number_cases(EVAL, "--num", {"one": "1", "zero": "0", "negative": "-5"}, ["--num", "range"]),
    *_number_cases(EVAL, "--batch-size", NOT_AN_INT, ["--batch-size", "not a valid integer"]),
    *_number_cases(EVAL, "--batch-size", {"zero": "0", "negative": "-1"}, ["--batch-size", "range"]),
    *_number_cases(EVAL, "--seed", {"nan": "nan", "empty": ""}, ["--seed", "not a valid integer"]),
    *_number_cases(EVAL, "--seed", {"negative": "-1", "huge": "4294967296"}, ["--seed", "range"]),
    _eval("device-unknown", ["--device", "gpu0"], ["--device gpu0"]),
    _eval("impl-unknown", ["--impl", "fast"], ["--impl"]),
    _eval("env-impl-unknown", [], ["unknown impl 'bogus' from $ANIPORTRAIT_IMPL"], {"ANIPORTRAIT_IMPL": "bogus"}),
    _eval("data-missing", ["--data", "{in}/nope"], ["--data", "does not exist"]),
    _eval("data-is-a-file", ["--data", "{in}/text.txt"], ["--data", "is a file"]),
    _eval("data-empty-path", ["--data", ""], ["--data", "the path is empty"]),
    _eval("data-not-a-dataset", [], ["emptydir", "not a valid dataset", "dataset.json"]),
    _eval("fid-without-inception", ["--metrics", "fid"], ["need --inception"]),
    _eval("checkpoint-empty", ["--checkpoint", "{in}/empty"], ["not a readable safetensors file"]),
    _eval("smpl-folder", ["--smpl", "{in}/folder"], ["--smpl", "is a directory"]),
]


@pytest.mark.parametrize("case", EVAL_CASES, ids=lambda c: c.id)
def test_eval_refuses(case, inputs, tmp_path):
    check_case(case, inputs, tmp_path)


def test_eval_refusal_keeps_an_existing_report(inputs, tmp_path):
    report = tmp_path / "report.json"
    report.write_text('{"earlier": 1}')
    check_case(_eval("keep-report", ["--metrics", ",", "--json", str(report)], ["names no metric"]), inputs, tmp_path)
    assert report.read_text() == '{"earlier": 1}'


# -- data check and data synth -------------------------------------------------------------------------------------

SYNTH = ["data", "synth", "{out}/ds", "--n", "1", "--quiet"]

DATA_CASES = [
    Case("check-missing", ["data", "check", "{in}/nope"], ["DATASET", "does not exist"]),
    Case("check-file", ["data", "check", "{in}/text.txt"], ["DATASET", "is a file"]),
    Case("check-empty-path", ["data", "check", ""], ["DATASET", "the path is empty"]),
    Case("synth-under-a-file", ["data", "synth", "{in}/text.txt/ds"], ["cannot create", "is a file, not a folder"]),
    Case("synth-deep-under-a-file", ["data", "synth", "{in}/text.txt/a/b"], ["text.txt is a file, not a folder"]),
    Case("synth-is-a-file", ["data", "synth", "{in}/text.txt"], ["OUT", "is a file"]),
    Case("synth-not-empty", ["data", "synth", "{in}"], ["exists and is not empty"]),
    Case("synth-empty-path", ["data", "synth", ""], ["OUT", "the path is empty"]),
    *_number_cases(SYNTH, "--n", NOT_AN_INT, ["--n", "not a valid integer"]),
    *_number_cases(SYNTH, "--n", {"zero": "0", "negative": "-1", "huge": "1000001"}, ["--n", "range"]),
    *_number_cases(SYNTH, "--res", NOT_AN_INT, ["--res", "not a valid integer"]),
    *_number_cases(SYNTH, "--res", {"small": "15", "zero": "0", "huge": "2049"}, ["--res", "range"]),
    *_number_cases(SYNTH, "--face-res", {"nan": "nan", "empty": ""}, ["--face-res", "not a valid integer"]),
    *_number_cases(SYNTH, "--face-res", {"zero": "0", "huge": "4096"}, ["--face-res", "range"]),
    *_number_cases(SYNTH, "--seed", {"nan": "nan", "float": "0.5"}, ["--seed", "not a valid integer"]),
    *_number_cases(SYNTH, "--seed", {"negative": "-1", "huge": "4294967296"}, ["--seed", "range"]),
    Case("data-unknown-subcommand", ["data", "bogus"], ["No such command 'bogus'"]),
    Case("check-extra-argument", ["data", "check", "{in}/emptydir", "more"], ["unexpected extra argument"]),
    Case("synth-missing-out", ["data", "synth"], ["Missing argument 'OUT'"]),
]


@pytest.mark.parametrize("case", DATA_CASES, ids=lambda c: c.id)
def test_data_commands_refuse(case, inputs, tmp_path):
    check_case(case, inputs, tmp_path)


# -- convert-official ----------------------------------------------------------------------------------------------


def _convert(id: str, checkpoint: str, knn: str, out: str, fragments: list[str], extra=()) -> Case:
    args = ["convert-official", checkpoint, "--knn-index", knn, "-o", out, *extra]
    return Case(id, args, fragments)


PT, KNN, OUT = "{in}/weights.pt", "{in}/knn.npy", "{out}/model.safetensors"

CONVERT_CASES = [
    _convert("checkpoint-missing", "{in}/sshq512.pt", KNN, OUT, ["official checkpoint not found"]),
    _convert("checkpoint-folder", "{in}/folder", KNN, OUT, ["CHECKPOINT", "is a directory"]),
    _convert("checkpoint-empty", "{in}/empty", KNN, OUT, ["the file is empty"]),
    _convert("checkpoint-text", "{in}/text.txt", KNN, OUT, ["not a readable PyTorch checkpoint", "another format"]),
    _convert("checkpoint-truncated", "{in}/trunc.pt", KNN, OUT, ["trunc.pt", "not a readable PyTorch checkpoint"]),
    _convert("checkpoint-npy", "{in}/camera.npy", KNN, OUT, ["numpy .npy array"]),
    _convert("checkpoint-pickled-code", "{in}/payload.pt", KNN, OUT, ["refused", "pickled objects"]),
    _convert("checkpoint-other-model", PT, KNN, OUT, ["not the release's SSHQ512 generator"]),
    _convert("checkpoint-empty-path", "", KNN, OUT, ["CHECKPOINT", "the path is empty"]),
    _convert("knn-missing", PT, "{in}/nope.npy", OUT, ["knn index file not found", "valid_smpl_knn_index.npy"]),
    _convert("knn-folder", PT, "{in}/folder", OUT, ["--knn-index", "is a directory"]),
    _convert("knn-empty", PT, "{in}/empty", OUT, ["the file is empty"]),
    _convert("knn-text", PT, "{in}/text.txt", OUT, ["no numpy header"]),
    _convert("knn-truncated", PT, "{in}/trunc.npy", OUT, ["not a readable .npy array"]),
    _convert("knn-npz", PT, "{in}/arr.npz", OUT, [".npz archive"]),
    _convert("knn-pickled", PT, "{in}/obj.npy", OUT, ["never unpickled"]),
    _convert("knn-float", PT, "{in}/knn-float.npy", OUT, ["1-D integer array"]),
    _convert("knn-2d", PT, "{in}/knn-2d.npy", OUT, ["1-D integer array"]),
    _convert("knn-unsorted", PT, "{in}/knn-unsorted.npy", OUT, ["sorted, unique"]),
    _convert("knn-too-many-rows", PT, "{in}/knn-rows.npy", OUT, ["7,000 rows", "at most 6,890"]),
    _convert("out-under-a-file", PT, KNN, "{in}/text.txt/m.safetensors", ["-o", "is a file, not a folder"]),
    _convert("out-folder-missing", PT, KNN, "{out}/no/m.safetensors", ["output folder does not exist"]),
    _convert("out-is-a-folder", PT, KNN, "{in}/folder", ["--out", "is a directory"]),
    _convert("out-empty-path", PT, KNN, "", ["--out", "the path is empty"]),
    _convert("out-overwrites-checkpoint", PT, KNN, PT, ["would overwrite the input"]),
    _convert("out-overwrites-knn", PT, KNN, KNN, ["would overwrite the input"]),
    _convert("smpl-out-same-as-out", PT, KNN, OUT, ["same file"], ["--smpl-out", OUT]),
    _convert("smpl-out-under-a-file", PT, KNN, OUT, ["--smpl-out", "is a file"], ["--smpl-out", "{in}/text.txt/s"]),
]


@pytest.mark.parametrize("case", CONVERT_CASES, ids=lambda c: c.id)
def test_convert_official_refuses(case, inputs, tmp_path):
    check_case(case, inputs, tmp_path)


# -- info, the group, read-only folders ----------------------------------------------------------------------------


def test_info_reports_an_unknown_impl_and_exits_2(inputs, tmp_path):
    result = invoke(["info"], inputs, tmp_path, {"ANIPORTRAIT_IMPL": "bogus"})
    refused(result, ["unknown impl 'bogus' from $ANIPORTRAIT_IMPL", "unset it"])
    assert "torch" in result.stdout and "auto impl   none" in result.stdout


@pytest.mark.parametrize(("value", "expected"), [("ref", "ref (set by ANIPORTRAIT_IMPL)"), (" REF ", "ref (set")])
def test_info_honours_the_impl_variable(inputs, tmp_path, value, expected):
    result = invoke(["info"], inputs, tmp_path, {"ANIPORTRAIT_IMPL": value})
    assert result.exit_code == 0, result.output
    assert f"auto impl   {expected}" in result.stdout


def test_info_refuses_forced_triton_that_cannot_run(inputs, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available")
    result = invoke(["info"], inputs, tmp_path, {"ANIPORTRAIT_IMPL": "triton", "TRITON_INTERPRET": "0"})
    refused(result, ["$ANIPORTRAIT_IMPL=triton", "CUDA"])


# -- view ----------------------------------------------------------------------------------------------------------

VIEW = ["view", "--device", "cpu"]
VIEW_CASES = [
    *_number_cases(VIEW, "--port", NOT_AN_INT, ["--port", "not a valid integer"]),
    *_number_cases(VIEW, "--port", {"zero": "0", "negative": "-1", "huge": "65536"}, ["--port", "range"]),
    Case("view-host", [*VIEW, "--host", "no-such-host.invalid"], ["--host", "unknown address"]),
    Case("view-checkpoint", [*VIEW, "--checkpoint", "{in}/nope.safetensors"], ["checkpoint not found"]),
    Case("view-checkpoint-text", [*VIEW, "--checkpoint", "{in}/text.txt"], ["not a readable safetensors file"]),
    Case("view-device", ["view", "--device", "tpu"], ["--device", "tpu"]),
    Case("view-impl", [*VIEW, "--impl", "fast"], ["--impl", "fast"]),
]


@pytest.mark.parametrize("case", VIEW_CASES, ids=lambda c: c.id)
def test_view_refuses(case, inputs, tmp_path):
    check_case(case, inputs, tmp_path)


def test_view_refuses_a_port_in_use(inputs, tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        check_case(Case("view-port-taken", [*VIEW, "--port", port], [port, "choose another --port"]), inputs, tmp_path)


def test_view_without_gradio_says_how_to_install_it(inputs, tmp_path, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else find_spec(name, *a))
    check_case(Case("view-no-gradio", VIEW, ["Gradio", "aniportrait[viewer]"]), inputs, tmp_path)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [(["frobnicate"], "No such command 'frobnicate'"), (["--bogus"], "No such option '--bogus'")],
    ids=["unknown-command", "unknown-option"],
)
def test_group_usage_errors_are_one_line(inputs, tmp_path, args, fragment):
    check_case(Case(args[0], args, [fragment, "--help"]), inputs, tmp_path)


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["render", "--help"], ["data", "synth", "--help"]])
def test_version_and_help_succeed(inputs, tmp_path, args):
    result = invoke(args, inputs, tmp_path)
    assert result.exit_code == 0 and result.output.strip()


def test_render_help_states_the_ranges_and_limits(inputs, tmp_path):
    text = " ".join(invoke(["render", "--help"], inputs, tmp_path).output.split())
    for phrase in ("[-10, 10]", "[-pi, pi]", "(0, pi)", "[pi/2 - pi, pi/2 + pi]", "100,000 frames", "at most 100,000"):
        assert phrase in text, phrase


READ_ONLY_CASES = [
    _render("render-out", ["--out", "{out}/ro/videos"], ["--out", "not writable"]),
    Case("synth", ["data", "synth", "{out}/ro/ds"], ["cannot create", "not writable"]),
    _eval("eval-json", ["--json", "{out}/ro/r.json"], ["--json", "Permission denied"]),
    _convert("convert-out", PT, KNN, "{out}/ro/m.safetensors", ["-o", "Permission denied"]),
]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write to read-only folders")
@pytest.mark.parametrize("case", READ_ONLY_CASES, ids=lambda c: c.id)
def test_read_only_output_folders_are_refused(case, inputs, tmp_path):
    read_only = tmp_path / "out" / "ro"
    read_only.mkdir(parents=True)
    read_only.chmod(0o555)
    try:
        line = refused(invoke(case.args, inputs, tmp_path / "out", case.env), case.fragments)
        assert os.listdir(read_only) == [], line
    finally:
        read_only.chmod(0o755)
