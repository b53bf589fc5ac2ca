"""A tiny on-disk dataset for the dataset and sampler tests."""

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from aniportrait.data.format import FORMAT, LABEL_SHAPES, VERSION

R, F = 16, 8


def write_dataset(root: Path, n: int = 6, image_size: int = R, face_size: int = F, seed: int = 0) -> Path:
    """Write ``n`` random portraits, face crops and labels in the on-disk format; returns ``root``."""
    rng = np.random.default_rng(seed)
    ids = [f"{i:06d}" for i in range(n)]
    (root / "images").mkdir(parents=True)
    (root / "faces").mkdir()
    for stem in ids:
        Image.fromarray(rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)).save(
            root / "images" / f"{stem}.png"
        )
        Image.fromarray(rng.integers(0, 256, (face_size, face_size, 3), dtype=np.uint8)).save(
            root / "faces" / f"{stem}.png"
        )
    labels = {k: rng.normal(size=(n, *shape)).astype(np.float32) for k, shape in LABEL_SHAPES.items()}
    labels["camera"] = (math.pi / 2 + 0.2 * rng.normal(size=(n, 2))).astype(np.float32)
    np.savez(root / "labels.npz", ids=np.array(ids, dtype=str), **labels)
    meta = {"format": FORMAT, "version": VERSION, "image_size": image_size, "face_size": face_size, "count": n}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root
