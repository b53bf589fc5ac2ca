"""What the training tests share: fast settings, a tiny on-disk dataset, and `aniportrait train` through click."""

import json

import numpy as np
from click.testing import CliRunner

from aniportrait.cli import main
from aniportrait.data.format import LABEL_SHAPES

FAST = {"batch_size": 1, "impl": "ref", "log_every": 1, "sample_every": 1000, "checkpoint_every": 1000}


def write_dataset(path, n=4, res=16, face=16, seed=0):
    """A tiny dataset in the on-disk format (random pixels, plausible labels)."""
    import imageio.v2 as imageio

    rng = np.random.default_rng(seed)
    (path / "images").mkdir(parents=True)
    (path / "faces").mkdir()
    ids = np.array([f"{i:04d}" for i in range(n)])
    for i in ids:
        imageio.imwrite(path / "images" / f"{i}.png", rng.integers(0, 255, (res, res, 3), dtype=np.uint8))
        imageio.imwrite(path / "faces" / f"{i}.png", rng.integers(0, 255, (face, face, 3), dtype=np.uint8))
    labels = {k: (0.1 * rng.standard_normal((n, *s))).astype(np.float32) for k, s in LABEL_SHAPES.items()}
    labels["camera"] += np.float32(np.pi / 2)
    np.savez(path / "labels.npz", ids=ids, **labels)
    meta = {"format": "aniportrait-dataset", "version": 1, "image_size": res, "face_size": face, "count": n}
    (path / "dataset.json").write_text(json.dumps(meta))
    return path


def train(*args):
    """`aniportrait train ARGS --quiet`, invoked through click; a new run gets the tiny preset unless ARGS name one
    (a resumed run takes its own)."""
    args = [str(a) for a in args]
    preset = [] if "--resume" in args or "--config" in args else ["--config", "tiny"]
    return CliRunner().invoke(main, ["train", *preset, *args, "--quiet"])
