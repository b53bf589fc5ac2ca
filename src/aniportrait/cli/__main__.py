"""``python -m aniportrait.cli``: the command line (torchrun launches training this way)."""

from aniportrait.cli import main

main()
