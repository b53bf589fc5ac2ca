"""The `aniportrait` click group (``cli/__init__.py``): its help lists the commands, and an unknown command is a
usage error (exit 2, no traceback). Every command's usage errors are in ``test_bad_input.py``."""

from click.testing import CliRunner

from aniportrait.cli import main


def test_help_lists_commands():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "info" in result.output


def test_unknown_command_exits_2_without_traceback():
    result = CliRunner().invoke(main, ["frobnicate"])
    assert result.exit_code == 2
    assert "No such command" in result.output and "Traceback" not in result.output


def test_main_help_lists_commands():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("render", "convert-official", "info"):
        assert command in result.output
