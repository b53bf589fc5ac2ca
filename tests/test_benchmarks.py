"""The benchmark suite imports against the current API and skips cleanly without CUDA."""

import json
import os
import pathlib
import subprocess
import sys

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU behaviour: everything skipped")
def test_benchmarks_collect_and_skip_without_cuda():
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks", "-q", "-p", "no:cacheprovider"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "skipped" in result.stdout and "error" not in result.stdout.lower(), result.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU dry run")
def test_device_check_dry_run_ends_cleanly_without_cuda(tmp_path):
    """benchmarks/device_check.sh (the one-call GPU check) says there is no GPU, writes its JSON and exits 0."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", "benchmarks/device_check.sh", str(tmp_path / "out")],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no CUDA device here" in result.stdout
    report = json.loads((tmp_path / "out" / "device_check.json").read_text())
    assert report["cuda"] is False and report["parts"] == []
    fps = subprocess.run(
        [sys.executable, "benchmarks/gpu_fps.py", "--json", str(tmp_path / "fps.json")],
        check=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    assert "no CUDA device" in fps.stdout
    assert json.loads((tmp_path / "fps.json").read_text()) == {"cuda": False}
