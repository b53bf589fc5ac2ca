"""docs/default_model/train.sh continues where it stopped: run again, it skips the data and the finished runs, resumes
the run that has a state and starts afresh one stopped before its first checkpoint. Checked with a stand-in
`aniportrait` on PATH that records its calls and writes the files the real one would."""

import os
import stat
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "default_model" / "train.sh"

# The stand-in: `data synth OUT/data` writes dataset.json; `train --out RUN` writes a state (a new run also its
# config.json), then stops with exit code 1 if RUN's name is in $STOP_AT, else logs "done at step 1".
STAND_IN = r"""#!/usr/bin/env bash
echo "$*" >> "$CALLS"
if [ "$1" = data ]; then mkdir -p "$3" && touch "$3/dataset.json"; exit 0; fi
out=""; prev=""
for arg in "$@"; do [ "$prev" = --out ] && out=$arg; prev=$arg; done
mkdir -p "$out"
case " $* " in *" --resume "*) ;; *) [ -e "$out/config.json" ] && { echo "already holds a run" >&2; exit 2; }; touch "$out/config.json" ;; esac
case " $STOP_BEFORE_STATE " in *" $(basename "$out") "*) exit 1 ;; esac
touch "$out/state.safetensors"
case " $STOP_AT " in *" $(basename "$out") "*) exit 1 ;; esac
echo "done at step 1" >> "$out/log.txt"
"""


@pytest.fixture
def stand_in(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "aniportrait"
    tool.write_text(STAND_IN)
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def recipe(stand_in, out, calls, **stops):
    env = {**os.environ, "PATH": f"{stand_in}{os.pathsep}{os.environ['PATH']}", "CALLS": str(calls)}
    env.update({"STOP_AT": "", "STOP_BEFORE_STATE": "", **stops})
    result = subprocess.run(["bash", str(SCRIPT), str(out)], env=env, capture_output=True, text=True, timeout=60)
    lines = calls.read_text().splitlines() if calls.exists() else []
    calls.unlink(missing_ok=True)
    return result.returncode, [(line.split()[0], _run_of(line), "--resume" in line.split()) for line in lines]


def _run_of(line):
    words = line.split()
    return Path(words[words.index("--out") + 1]).name if "--out" in words else "data"


def test_the_recipe_continues_where_it_stopped(stand_in, tmp_path):
    out, calls = tmp_path / "runs", tmp_path / "calls.txt"
    code, made = recipe(stand_in, out, calls, STOP_AT="s1c")
    assert code != 0
    assert made == [("data", "data", False), *((("train", r, False)) for r in ("s1", "s1b", "s1c"))]
    code, made = recipe(stand_in, out, calls, STOP_BEFORE_STATE="s1d")
    assert code != 0
    assert made == [("train", "s1c", True), ("train", "s1d", False)], "data, s1 and s1b skipped, s1c resumed"
    code, made = recipe(stand_in, out, calls)
    assert code == 0, code
    assert made == [("train", "s1d", False), ("train", "s1e", False)], "s1d had no state: started afresh"
    code, made = recipe(stand_in, out, calls)
    assert code == 0 and made == [], "all finished: nothing runs"


def test_every_run_of_the_recipe_gets_the_generator_settings(stand_in, tmp_path):
    calls = tmp_path / "calls.txt"
    env = {**os.environ, "PATH": f"{stand_in}{os.pathsep}{os.environ['PATH']}", "CALLS": str(calls)}
    env.update(STOP_AT="", STOP_BEFORE_STATE="")
    subprocess.run(["bash", str(SCRIPT), str(tmp_path / "runs")], env=env, check=True, timeout=60)
    trains = [line for line in calls.read_text().splitlines() if line.startswith("train")]
    assert len(trains) == 5
    for line in trains:
        assert "generator.field_hr_textures=true" in line and "generator.expression_gate_depth_high=-0.025" in line
        assert "generator.hidden_dim=96" in line and "recon_ema=0.998" in line
        assert "imitation_region_share=0.5 " in line  # as the shipped default was made
        assert "--config small" in line
