"""`aniportrait convert-official`: its help. The command's conversion tests run it on a synthetic release checkpoint
and sit with that fixture in ``tests/test_convert.py``; its bad-input cases are in ``test_bad_input.py``."""

from click.testing import CliRunner

from aniportrait.cli import main


def test_convert_help_lists_options():
    result = CliRunner().invoke(main, ["convert-official", "--help"])
    assert result.exit_code == 0
    for option in ("--knn-index", "--out", "--smpl-out", "--id-bank", "weights_only"):
        assert option in result.output
