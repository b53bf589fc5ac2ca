"""`aniportrait info`: versions and the implementation `auto` picks (its bad-input cases are in
``test_bad_input.py``)."""

from click.testing import CliRunner

from aniportrait.cli import main


def test_info_reports_versions_and_impl():
    result = CliRunner().invoke(main, ["info"])
    assert result.exit_code == 0, result.output
    assert "torch" in result.output and "auto impl" in result.output
