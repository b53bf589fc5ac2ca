"""The README's training commands work as written (with a tiny dataset, the tiny preset and few steps)."""

import re
import shlex
from pathlib import Path

from click.testing import CliRunner

from aniportrait.cli import main
from tests.train.train_helpers import write_dataset

README = Path(__file__).resolve().parents[2] / "README.md"


def training_commands() -> list[list[str]]:
    block = README.read_text().split("## Training: `aniportrait train`", 1)[1].split("```bash", 1)[1].split("```")[0]
    lines = [line.split("#")[0].strip() for line in block.splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith("aniportrait train")]


def test_readme_train_resume_and_stage2_commands_run(tmp_path, monkeypatch):
    commands = training_commands()
    assert len(commands) == 3, commands
    assert "--resume" in commands[1] and "--config" not in commands[1], "resume takes the run's own settings"
    data = write_dataset(tmp_path / "data" / "synth", res=64, face=32)
    monkeypatch.chdir(tmp_path)
    extra = ["--set", "batch_size=1", "--set", "impl=ref", "--set", "sample_every=1000", "--quiet"]
    for index, args in enumerate(commands):
        args = ["tiny" if a == "small" else a for a in args]
        args = [re.sub(r"total_steps=\d+", f"total_steps={index + 1}", a) for a in args]
        args = [str(data) if a == "data/synth" else a for a in args]
        if "--resume" in args:
            args += ["--quiet"]  # a resumed run takes every other setting from its folder
        else:
            args += extra + ([] if any("total_steps" in a for a in args) else ["--set", "total_steps=1"])
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, (args, result.output)
        if "--resume" in args:
            assert "trained to step 2" in result.output
    assert (tmp_path / "runs" / "s2" / "generator.safetensors").is_file()
    log = (tmp_path / "runs" / "s2" / "log.txt").read_text()
    assert "init from" in log and "stage 2" in log
