"""Files a user names: the safe, bounded .npy and PyTorch loaders, and the output-path checks."""

import os

import numpy as np
import pytest
import torch

from aniportrait.userfiles import (
    UnreadableFileError,
    load_npy,
    load_torch_file,
    output_file_problem,
    output_folder_problem,
)


class RunsCodeWhenUnpickled:
    """Unpickling this creates the folder ``path``: a stand-in for malicious code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


# -- load_npy ------------------------------------------------------------------------------------------------------


def test_load_npy_round_trips_versions_1_and_2(tmp_path):
    array = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / "v1.npy", array)
    with open(tmp_path / "v2.npy", "wb") as f:
        np.lib.format.write_array(f, array, version=(2, 0))
    for name in ("v1.npy", "v2.npy"):
        out = load_npy(tmp_path / name, "test file")
        assert out.dtype == np.float32 and np.array_equal(out, array)


def _written(content: bytes):
    """A maker of a file ``a.npy`` holding ``content``."""

    def make(folder):
        (folder / "a.npy").write_bytes(content)
        return folder / "a.npy"

    return make


def _truncated(folder):
    path = folder / "a.npy"
    np.save(path, np.zeros((10, 4)))
    path.write_bytes(path.read_bytes()[:-40])
    return path


def _npz(folder):
    path = folder / "a.npz"
    np.savez(path, a=np.zeros(3))
    return path


def _pt(folder):
    path = folder / "a.pt"
    torch.save({"w": torch.zeros(2)}, path)
    return path


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda d: d / "missing.npy", "test file not found"),
        (lambda d: d, "is a folder"),
        (_written(b""), "the file is empty"),
        (_written(b"1, 2, 3\n"), "no numpy header"),
        (_written(b"\x93NUMPY\x01\x00garbage"), "damaged header"),
        (_truncated, "not a readable .npy array"),
        (_npz, ".npz archive"),
        (_pt, "PyTorch file"),
    ],
    ids=["missing", "folder", "empty", "text", "bad-header", "truncated", "npz", "pytorch"],
)
def test_load_npy_refuses_with_one_line_naming_the_file(tmp_path, make, fragment):
    path = make(tmp_path)
    with pytest.raises(UnreadableFileError) as err:
        load_npy(path, "test file")
    message = str(err.value)
    assert fragment in message and str(path) in message and "\n" not in message


def test_load_npy_never_unpickles(tmp_path):
    sentinel = tmp_path / "code-ran"
    path = tmp_path / "a.npy"
    np.save(path, np.array([RunsCodeWhenUnpickled(sentinel)], dtype=object), allow_pickle=True)
    with pytest.raises(UnreadableFileError, match="Python objects, which are never unpickled"):
        load_npy(path, "test file")
    assert not sentinel.exists()


def test_load_npy_limits_are_checked_on_the_header_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "a.npy"
    np.save(path, np.zeros((1000, 8), np.float64))  # 64,000 bytes
    assert load_npy(path, "test file", max_rows=1000, max_bytes=64_000).shape == (1000, 8)

    def no_data_read(*args, **kwargs):
        raise AssertionError("the data was read")

    monkeypatch.setattr(np, "load", no_data_read)
    with pytest.raises(UnreadableFileError, match="has 1,000 rows; at most 999"):
        load_npy(path, "test file", max_rows=999)
    with pytest.raises(UnreadableFileError, match="MiB"):
        load_npy(path, "test file", max_bytes=63_999)


def test_load_npy_uses_the_callers_advice(tmp_path):
    with pytest.raises(UnreadableFileError, match="not found: .*; pass the release's file"):
        load_npy(tmp_path / "missing.npy", "index file", fix="pass the release's file")
    (tmp_path / "a.npy").write_text("text")
    with pytest.raises(UnreadableFileError, match="; pass the release's file$"):
        load_npy(tmp_path / "a.npy", "index file", fix="pass the release's file")


# -- load_torch_file -----------------------------------------------------------------------------------------------


def test_load_torch_file_reads_a_state_dict(tmp_path):
    path = _pt(tmp_path)
    state = load_torch_file(path, "weights", fix="pass the right file")
    assert torch.equal(state["w"], torch.zeros(2))


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "the file is empty"),
        (b"hello world\n", "damaged or another format"),  # torch.load raises KeyError: 101 on this
        (np.random.default_rng(17).bytes(2048), "damaged or another format"),  # ... and IndexError on this
        (b"PK\x03\x04" + b"\x00" * 64, "damaged or another format"),
        (b"\x93NUMPY\x01\x00", "it is a numpy .npy array"),
    ],
    ids=["empty", "text", "random", "broken-zip", "npy"],
)
def test_load_torch_file_refuses_damaged_or_foreign_files(tmp_path, content, fragment):
    path = tmp_path / "w.pth"
    path.write_bytes(content)
    with pytest.raises(UnreadableFileError) as err:
        load_torch_file(path, "weights", noun="weights file", fix="pass the right file")
    message = str(err.value)
    assert message.startswith(f"{path}: not a weights file") and fragment in message
    assert message.endswith("; pass the right file") and "\n" not in message


def test_load_torch_file_refuses_a_truncated_file(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({f"w{i}": torch.randn(256) for i in range(8)}, path)
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(UnreadableFileError, match="damaged or another format"):
        load_torch_file(path, "weights", fix="pass the right file")


def test_load_torch_file_never_runs_pickled_code(tmp_path):
    sentinel = tmp_path / "code-ran"
    path = tmp_path / "w.pt"
    torch.save({"w": torch.zeros(1), "x": RunsCodeWhenUnpickled(sentinel)}, path)
    with pytest.raises(UnreadableFileError, match="refused, it holds pickled objects other than tensors"):
        load_torch_file(path, "weights", fix="pass the right file")
    assert not sentinel.exists()


@pytest.mark.parametrize("make", [lambda d: d / "missing.pt", lambda d: d], ids=["missing", "folder"])
def test_load_torch_file_refuses_missing_files_and_folders(tmp_path, make):
    with pytest.raises(UnreadableFileError, match="weights (not found|.* is a folder)"):
        load_torch_file(make(tmp_path), "weights", fix="pass the right file")


# -- output paths --------------------------------------------------------------------------------------------------


def test_output_file_problem(tmp_path):
    (tmp_path / "file").write_text("x")
    assert output_file_problem(tmp_path / "out.json") is None
    assert "output folder does not exist" in output_file_problem(tmp_path / "no" / "out.json")
    assert "is a file, not a folder" in output_file_problem(tmp_path / "file" / "out.json")
    assert sorted(os.listdir(tmp_path)) == ["file"]  # the write test leaves nothing behind


def test_output_folder_problem(tmp_path):
    (tmp_path / "file").write_text("x")
    assert output_folder_problem(tmp_path / "new" / "deeper") is None
    assert output_folder_problem(tmp_path) is None
    assert "is a file, not a folder" in output_folder_problem(tmp_path / "file")
    assert f"{tmp_path / 'file'} is a file" in output_folder_problem(tmp_path / "file" / "a" / "b")
    assert sorted(os.listdir(tmp_path)) == ["file"]  # creates nothing


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write to read-only folders")
def test_read_only_folders_are_reported(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        assert "not writable" in output_folder_problem(folder / "new")
        assert "cannot write in" in output_file_problem(folder / "out.json")
    finally:
        folder.chmod(0o755)
