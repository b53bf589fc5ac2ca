"""The on-disk dataset format (aniportrait.data.format): its constants agree with its documented layout, stay the
names that datasets already on disk use, and its label rows fit the models and the render keyframes they drive."""

import re

import numpy as np
import pytest
import torch

from aniportrait.config import TINY, GeneratorConfig
from aniportrait.data import format as fmt
from aniportrait.render import keyframes

# "  camera      [N, 2]     float32  ..." rows of the labels.npz table in the module docstring
_ROW = re.compile(r"^\s+(\w+)\s+\[N((?:, \d+)*)\]\s+(str|float32)\b", re.MULTILINE)


def _documented_labels() -> dict[str, tuple[tuple[int, ...], str]]:
    rows = _ROW.findall(fmt.__doc__)
    return {name: (tuple(int(d) for d in dims.split(", ")[1:]), dtype) for name, dims, dtype in rows}


def test_docstring_table_matches_label_shapes():
    documented = _documented_labels()
    assert documented.pop("ids") == ((), "str")
    assert documented == {name: (shape, "float32") for name, shape in fmt.LABEL_SHAPES.items()}


def test_docstring_names_the_files_and_the_meta_header():
    doc = fmt.__doc__
    assert f"Dataset format (version {fmt.VERSION})".lower() in doc.lower()
    assert f'"format": "{fmt.FORMAT}", "version": {fmt.VERSION}' in doc
    for name in (fmt.META_FILE, fmt.LABELS_FILE):
        assert re.search(rf"^\s+{re.escape(name)}\s", doc, re.MULTILINE), name
    for folder in (fmt.IMAGES_DIR, fmt.FACES_DIR):
        assert f"{folder}/{{id}}{fmt.IMAGE_EXT}" in doc, folder


def test_on_disk_names_are_stable():
    """Datasets already written use these names; changing one needs a new format version."""
    assert (fmt.FORMAT, fmt.VERSION) == ("aniportrait-dataset", 1)
    assert (fmt.META_FILE, fmt.LABELS_FILE) == ("dataset.json", "labels.npz")
    assert (fmt.IMAGES_DIR, fmt.FACES_DIR, fmt.IMAGE_EXT) == ("images", "faces", ".png")
    assert list(fmt.LABEL_SHAPES) == ["camera", "pose", "betas", "id", "expression"]


def test_label_shapes_fit_the_generator():
    for config in (GeneratorConfig(), TINY):
        assert fmt.LABEL_SHAPES["id"] == (config.z_id_dim,)
        assert fmt.LABEL_SHAPES["expression"] == (config.z_exp_dim,)
        assert fmt.LABEL_SHAPES["betas"] == (config.betas_dim,)


@pytest.mark.parametrize("name", ["camera", "pose", "expression"])
def test_label_rows_drive_render_keyframes(name):
    """Labels follow the keyframe files' conventions, so a label column is a valid keyframe array as it is."""
    assert keyframes.SHAPES[name] == fmt.LABEL_SHAPES[name]
    rows = np.zeros((3, *fmt.LABEL_SHAPES[name]), np.float32)
    if name == "camera":
        rows[:] = keyframes.FRONTAL  # pi/2 = frontal in both
    np.testing.assert_array_equal(keyframes.validate(name, rows, "labels.npz"), rows)
    with pytest.raises(keyframes.KeyframeError, match="must have shape"):
        keyframes.validate(name, rows[:, :1], "labels.npz")


def test_label_rows_drive_the_body_model(body):
    betas = torch.zeros(2, *fmt.LABEL_SHAPES["betas"])
    pose = torch.zeros(2, *fmt.LABEL_SHAPES["pose"])
    assert body.joints(betas, pose).shape == (2, 24, 3)
