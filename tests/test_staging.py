"""Staging names: a killed writer's leftovers are removed by the next write into the folder, a live writer's never;
atomic writes get the umask's file mode."""

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aniportrait import staging
from aniportrait.staging import atomic_write, owned_prefix, owner_id, remove_stale, stale_entries


@pytest.fixture
def dead_pid():
    """The PID of a process that has exited and been reaped."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture(params=[0o022, 0o027], ids=["umask022", "umask027"])
def umask(request):
    """Run the test under this umask (restored afterwards)."""
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def other_owner() -> str:
    return f"{(int(owner_id(), 16) + 1) % 2**32:08x}"


def test_owned_names_carry_owner_and_pid():
    prefix = owned_prefix("tmp")
    assert prefix == f".tmp-{owner_id()}-{os.getpid()}-" and len(owner_id()) == 8
    assert owned_prefix("render", pid=12) == f".render-{owner_id()}-12-"
    with pytest.raises(ValueError, match="kind must be one of"):
        owned_prefix("cache")


def test_only_dead_writers_of_this_owner_are_stale(tmp_path, live_pid, dead_pid):
    dead_folder = tmp_path / f"{owned_prefix('render', dead_pid)}0-abc"
    dead_folder.mkdir()
    (dead_folder / "video_0_rgb.mp4").write_bytes(b"partial")
    dead_file = tmp_path / f"{owned_prefix('tmp', dead_pid)}0123abcd.safetensors"
    dead_file.write_bytes(b"")
    dead_probe = tmp_path / f"{owned_prefix('write-test', dead_pid)}x"
    dead_probe.write_bytes(b"")
    kept = {
        f"{owned_prefix('render', live_pid)}0-abc",  # a live render
        f"{owned_prefix('tmp', live_pid)}0123abcd.png",  # a live write
        f"{owned_prefix('tmp')}0123abcd.png",  # this process's own
        f".tmp-{other_owner()}-{dead_pid}-0123abcd.png",  # another host or container: its PIDs cannot be checked
        ".tmp-k2j3h4l5.safetensors",  # an older name without owner and PID
        ".render-0-k2j3h4l5",
        "video_0_rgb.mp4",
    }
    for name in kept:
        if "render" in name:
            (tmp_path / name).mkdir()
        else:
            (tmp_path / name).write_bytes(b"")
    assert stale_entries(tmp_path, ["tmp"]) == [str(dead_file)]
    assert sorted(stale_entries(tmp_path)) == sorted(map(str, (dead_folder, dead_file, dead_probe)))
    assert sorted(remove_stale(tmp_path)) == sorted(map(str, (dead_folder, dead_file, dead_probe)))
    assert set(os.listdir(tmp_path)) == kept
    assert remove_stale(tmp_path) == [] and stale_entries(tmp_path / "missing") == []


def test_process_exists():
    assert staging.process_exists(os.getpid())
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    assert not staging.process_exists(process.pid)
    assert staging.process_exists(2**80)  # cannot tell: treated as alive


def test_atomic_write_killed_half_way_is_cleaned_by_the_next_write(tmp_path, live_pid):
    """A real SIGKILL during a write leaves a staging folder with an empty file; the next write removes it."""
    target = tmp_path / "model.safetensors"
    script = (
        "import sys, time\nfrom aniportrait.staging import atomic_write\n"
        "atomic_write(sys.argv[1], lambda tmp: time.sleep(120))\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", script, str(target)])
    try:
        deadline = time.monotonic() + 60
        while not any(files for _, _, files in os.walk(tmp_path)) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    [leftover] = os.listdir(tmp_path)
    assert leftover.startswith(owned_prefix("tmp", writer.pid))
    assert os.listdir(tmp_path / leftover) == ["model.safetensors"]
    assert (tmp_path / leftover / "model.safetensors").stat().st_size == 0
    live = f"{owned_prefix('tmp', live_pid)}0123abcd"
    (tmp_path / live).mkdir()
    (tmp_path / live / "model.safetensors").write_bytes(b"")
    atomic_write(tmp_path / "other.bin", lambda tmp: Path(tmp).write_bytes(b"data"))
    assert set(os.listdir(tmp_path)) == {"other.bin", live}
    assert (tmp_path / "other.bin").read_bytes() == b"data"


def test_atomic_write_stages_in_its_own_folder_and_cleans_up_after_a_failure(tmp_path):
    def fail(tmp):
        staging_folder = os.path.dirname(tmp)
        assert os.path.basename(staging_folder).startswith(owned_prefix("tmp"))
        assert os.path.dirname(staging_folder) == str(tmp_path)  # same filesystem: the rename is atomic
        assert os.path.basename(tmp) == "sheet.png"  # writers that pick the format by extension still work
        open(os.path.join(staging_folder, ".tmpXYZ"), "wb").close()  # a writer's own temporary file
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(tmp_path / "sheet.png", fail)
    assert os.listdir(tmp_path) == []


def test_atomic_write_gives_the_umask_mode(tmp_path, umask):
    path = tmp_path / "out.bin"
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(b"one"))
    assert mode(path) == 0o666 & ~umask
    path.chmod(0o600)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(b"two"))  # a replaced file gets the umask's mode too
    assert path.read_bytes() == b"two" and mode(path) == 0o666 & ~umask


def test_checkpoints_get_the_umask_mode(tmp_path, umask):
    """safetensors writes through its own 0600 temporary file; the checkpoint still gets the umask's mode."""
    import torch

    from aniportrait.checkpoint import atomic_save

    atomic_save({"w": torch.zeros(2)}, tmp_path / "g.safetensors", {"format": "test"})
    assert mode(tmp_path / "g.safetensors") == 0o666 & ~umask
    assert os.listdir(tmp_path) == ["g.safetensors"]
