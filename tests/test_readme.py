"""The README's two set-up commands are the ones CI runs."""

import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
INSTALL = 'pip install torch==2.13.0 -e ".[test]" && aniportrait render --out out'
TEST = "python -m pytest"


def test_readme_and_ci_run_the_same_two_commands():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    for command in (INSTALL, TEST):
        assert f"\n{command}\n" in readme, f"README lacks the line: {command}"
        assert f"\n{command}\n" in ci, f".ci/run lacks the line: {command}"
