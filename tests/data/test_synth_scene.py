"""The scene of a synthetic figure: each pose label moves its own bones (the pose label is the figure's pose)."""

import numpy as np

from tests.data.synth_helpers import HEAD, centroid, in_parts, neutral, pose_offset, render, stack

# -- pose ------------------------------------------------------------------------------------------------------------


def test_head_nod_moves_the_head_only():
    base = neutral()
    fig = stack(base, base.with_(pose=pose_offset(3, 2, 0.3)))  # head (J15) about X: nod down
    _, _, labels, _ = render(fig, res=64)
    head0, head1 = in_parts(labels[0], *HEAD), in_parts(labels[1], *HEAD)
    assert (head0 ^ head1).sum() > 0.1 * head0.sum()
    assert centroid(in_parts(labels[1], "nose"))[0] > centroid(in_parts(labels[0], "nose"))[0] + 1  # nose goes down
    body = ("torso", "chest", "trapezius_l", "trapezius_r", "deltoid_l", "deltoid_r", "arm_l", "arm_r")
    np.testing.assert_array_equal(
        in_parts(labels[0], *body) & ~head0 & ~head1, in_parts(labels[1], *body) & ~head0 & ~head1
    )


def test_shoulder_labels_move_their_shoulder():
    base = neutral()
    fig = stack(base, base.with_(pose=pose_offset(4, 0, 0.3)), base.with_(pose=pose_offset(1, 0, 0.15)))
    _, _, labels, _ = render(fig, res=96)
    left = ("deltoid_l", "arm_l")
    right = ("deltoid_r", "arm_r", "trapezius_r")
    # Raising the left shoulder (J16 about Z) lifts the left arm (image right at the frontal view) only. The portrait
    # shows only the top of the arm, so the change is a rim of pixels.
    assert centroid(in_parts(labels[0], *left))[1] > 48
    assert (in_parts(labels[1], *left) ^ in_parts(labels[0], *left)).sum() > 20
    assert centroid(in_parts(labels[1], *left))[0] < centroid(in_parts(labels[0], *left))[0] - 0.3
    np.testing.assert_array_equal(in_parts(labels[1], *right), in_parts(labels[0], *right))
    # A left collar (J13) shrug moves the left trapezius and lifts the arm with it.
    assert (in_parts(labels[2], "trapezius_l") ^ in_parts(labels[0], "trapezius_l")).sum() > 20
    assert centroid(in_parts(labels[2], *left))[0] < centroid(in_parts(labels[0], *left))[0] - 1
    np.testing.assert_array_equal(in_parts(labels[2], *right), in_parts(labels[0], *right))
