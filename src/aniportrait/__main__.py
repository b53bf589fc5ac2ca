"""``python -m aniportrait``: the command line."""

from aniportrait.cli import main

main()
