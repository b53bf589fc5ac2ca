"""The prologue the docs scripts that measure one checkpoint on a dataset's rows share.

    parser = argparse.ArgumentParser(description=...)
    parser.add_argument("--num", type=int, default=128)  # and the script's own options
    args, generator, body, dataset, num = checkpoint_on_data(parser)

It adds ``--data``, ``--checkpoint`` and ``--json`` (all required), parses the command line, runs on one thread,
loads the checkpoint with the body it was made for and the dataset, and clips ``--num`` to the dataset's rows.
A script run as ``python docs/training/NAME.py`` imports it from its own folder.
"""

from __future__ import annotations

import argparse

import torch

from aniportrait.checkpoint import load_generator
from aniportrait.data.dataset import PortraitDataset
from aniportrait.pretrained import body_for_checkpoint


def checkpoint_on_data(parser: argparse.ArgumentParser, data_help: str | None = None):
    """-> (args, generator, body, dataset, num); ``parser`` must already have ``--num``."""
    parser.add_argument("--data", required=True, help=data_help)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    generator, metadata, valid_index = load_generator(args.checkpoint)
    body = body_for_checkpoint(metadata, valid_index, None)
    dataset = PortraitDataset(args.data)
    return args, generator, body, dataset, min(args.num, len(dataset))
