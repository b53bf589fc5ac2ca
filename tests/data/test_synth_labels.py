"""The labels of synthetic figures: sampling independent of batching, the identity code, expression meanings."""

import numpy as np

from aniportrait.data import synth_labels
from tests.data.synth_helpers import FRONTAL, in_parts, render

# -- sampling --------------------------------------------------------------------------------------------------------


def test_figure_labels_do_not_depend_on_batching():
    whole = synth_labels.sample_figures(5, 6)
    tail = synth_labels.sample_figures(5, 2, start=4)
    np.testing.assert_array_equal(whole.id[4:], tail.id)
    np.testing.assert_array_equal(whole.camera[4:], tail.camera)


# -- identity --------------------------------------------------------------------------------------------------------


def test_id_encodes_the_appearance():
    fig = synth_labels.sample_figures(11, 8)
    code = fig.id
    assert code.shape == (8, 80) and code.dtype == np.float32
    np.testing.assert_allclose(code[:, synth_labels.ID_LAYOUT["hair_rgb"]], 2 * fig.hair_rgb - 1, atol=1e-6)
    np.testing.assert_allclose(code[:, synth_labels.ID_LAYOUT["shirt_rgb"]], 2 * fig.shirt_rgb - 1, atol=1e-6)
    np.testing.assert_allclose(code[:, 0], 2 * fig.skin_tone - 1, atol=1e-6)
    styles = code[:, synth_labels.ID_LAYOUT["hair_style"]].argmax(1)
    np.testing.assert_array_equal(styles, fig.hair_style)
    # The rendered shirt has the chromaticity the id says (Lambert shading scales all channels alike).
    images, _, parts, _ = render(fig.with_(camera=np.tile(FRONTAL, (8, 1))))
    for i in range(8):
        shirt = in_parts(parts[i], "torso", "chest")
        shirt[1:-1, 1:-1] &= shirt[:-2, 1:-1] & shirt[2:, 1:-1] & shirt[1:-1, :-2] & shirt[1:-1, 2:]  # no edges
        pixels = images[i][shirt].astype(float)
        seen = np.median(pixels[pixels.max(1) < 250], axis=0)  # unclipped by the light
        wanted = (code[i, synth_labels.ID_LAYOUT["shirt_rgb"]] + 1) / 2
        np.testing.assert_allclose(seen / seen.sum(), wanted / wanted.sum(), atol=0.03)


# -- expression ------------------------------------------------------------------------------------------------------


def test_expression_meaning_matches_the_procedural_3dmm():
    from aniportrait.models.face3dmm import EXPRESSION_MEANING

    assert len(EXPRESSION_MEANING) == len(synth_labels.EXPRESSION_EFFECTS) == 4
    for index, meaning in enumerate(EXPRESSION_MEANING):
        assert meaning.split()[0] in synth_labels.EXPRESSION_EFFECTS[index], (
            meaning,
            synth_labels.EXPRESSION_EFFECTS[index],
        )
