"""One base for bad input: every module's input-error class derives from it, and the CLI turns it into exit 2."""

import ast
import importlib
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from aniportrait.errors import UserInputError

SRC = Path(__file__).resolve().parents[1] / "src" / "aniportrait"
INPUT_ERRORS = {
    "aniportrait.userfiles": "UnreadableFileError",
    "aniportrait.render.keyframes": "KeyframeError",
    "aniportrait.train.config": "ConfigError",
    "aniportrait.train.run_folder": "RunFolderError",
    "aniportrait.models.smpl_file": "BodyModelError",
    "aniportrait.models.face3dmm": "FaceModelError",
    "aniportrait.checkpoint": "CheckpointError",
    "aniportrait.data.dataset": "DatasetError",
    "aniportrait.eval.errors": "EvalError",
    "aniportrait.train.warmups": "WarmupStateError",
}


def test_every_input_error_class_derives_from_the_base():
    for module, name in INPUT_ERRORS.items():
        cls = getattr(importlib.import_module(module), name)
        assert issubclass(cls, UserInputError) and issubclass(cls, ValueError), f"{module}.{name}"
    # No other ValueError subclass hides in the package.
    found = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(getattr(b, "id", "") == "ValueError" for b in node.bases):
                found.add(node.name)
    assert found == {"UserInputError"}, found


def test_the_errors_module_imports_nothing_of_ours():
    tree = ast.parse((SRC / "errors.py").read_text())
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not imports


def test_the_cli_turns_any_input_error_into_one_line_and_exit_2():
    from aniportrait.cli import InputError, _input_errors

    @click.command()
    def failing():
        try:
            raise importlib.import_module("aniportrait.data.dataset").DatasetError("bad dataset; fix it")
        except _input_errors() as err:
            raise InputError(str(err)) from None

    result = CliRunner().invoke(failing, [])
    assert result.exit_code == 2
    assert result.output.strip() == "Error: bad dataset; fix it"
    with pytest.raises(ValueError):
        raise UserInputError("still a ValueError")
