"""The viewer's renderer: full frames are the API's (hence the command line's), previews are the low-resolution
image enlarged, identities are prepared once, trajectories are the built-in keyframes."""

import numpy as np
import pytest

import aniportrait
from aniportrait.render import keyframes as kf
from aniportrait.viewer.controls import ViewControls
from aniportrait.viewer.session import ViewerSession


@pytest.fixture(scope="module")
def session():
    return ViewerSession(aniportrait.load(device="cpu"), cache_size=2)


def test_a_full_frame_is_the_api_frame(session):
    controls = ViewControls(head_yaw=20, camera_yaw=-10, named=(1.0, 0.0, 0.0, 0.0))
    frame = session.frame(5, 0.6, controls)
    portrait = session.portrait
    expected = portrait.render(
        portrait.identity(5, 0.6),
        camera=controls.camera(),
        pose=controls.pose(),
        expression=controls.expression(),
        output="numpy",
    )[0]
    assert frame.kind == "full" and frame.image.dtype == np.uint8
    np.testing.assert_array_equal(frame.image, expected)
    assert frame.status(5, 0.6).startswith("full frame, 128x128, seed 5, psi 0.60")


def test_a_preview_is_the_low_resolution_image_enlarged_to_the_frame(session):
    controls = ViewControls(shoulder_tilt=10)
    preview = session.frame(5, 0.6, controls, preview=True)
    portrait = session.portrait
    low = portrait.render(portrait.identity(5, 0.6), pose=controls.pose(), output="numpy", output_size="lr")[0]
    side = portrait.resolution
    assert preview.kind == "preview" and preview.image.shape == (side, side, 3)
    factor = side // low.shape[0]
    assert factor > 1
    np.testing.assert_array_equal(preview.image[::factor, ::factor], low)
    np.testing.assert_array_equal(preview.image, np.repeat(np.repeat(low, factor, 0), factor, 1))


def test_identities_are_prepared_once_and_the_cache_is_bounded(session, monkeypatch):
    calls = []
    original = session.portrait.identity
    monkeypatch.setattr(session.portrait, "identity", lambda *a: calls.append(a) or original(*a))
    session._identities.clear()
    for seed in (1, 1, 2, 1, 3, 1, 2):
        session.identity(seed, 0.7)
    # cache of 2: 1 (miss), 1, 2 (miss), 1, 3 (miss, evicts 2), 1, 2 (miss)
    assert calls == [(1, 0.7), (2, 0.7), (3, 0.7), (2, 0.7)]


def test_a_trajectory_plays_the_built_in_keyframes(session):
    frames = list(session.trajectory(4, 0.7, "head", n_interval=2))
    keys = kf.interpolate(kf.builtin("head"), 2)
    assert [(i, n) for i, n, _ in frames] == [(i, len(keys)) for i in range(len(keys))]
    person = session.portrait.identity(4, 0.7)
    i = 3
    expected = session.portrait.render(person, keys.camera[i], keys.pose[i], keys.expression[i], output="numpy")[0]
    np.testing.assert_array_equal(frames[i][2].image, expected)


@pytest.mark.parametrize("seed, psi", [(-1, 0.7), (2**32, 0.7), (0, 1.5), (0, float("nan"))])
def test_bad_seed_or_psi_is_refused(session, seed, psi):
    with pytest.raises(ValueError):
        session.frame(seed, psi, ViewControls())


def test_an_unknown_trajectory_is_refused(session):
    with pytest.raises(ValueError, match="unknown trajectory"):
        next(session.trajectory(0, 0.7, "moonwalk"))
