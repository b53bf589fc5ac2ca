"""The console entry point."""

import os
import subprocess
import sys

from click.testing import CliRunner

from aniportrait.cli import main


def test_help_lists_commands():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "info" in result.output


def test_info_reports_versions_and_impl():
    result = CliRunner().invoke(main, ["info"])
    assert result.exit_code == 0, result.output
    assert "torch" in result.output and "auto impl" in result.output


def test_unknown_command_exits_2_without_traceback():
    result = CliRunner().invoke(main, ["frobnicate"])
    assert result.exit_code == 2
    assert "No such command" in result.output and "Traceback" not in result.output


def test_ops_import_needs_no_gpu():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    subprocess.run([sys.executable, "-c", "import aniportrait.ops"], check=True, env=env)
