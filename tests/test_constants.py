"""Relations between the release's named constants that the rest of the package relies on."""

from __future__ import annotations

import pytest
import torch

from aniportrait import constants as c
from aniportrait.geometry import euler_zyx_to_matrix

# ---------------------------------------------------------------------------------------------------------------------
# The portrait camera and its depth ranges


def test_camera_orbits_at_one_face_radius_inverse():
    assert c.CAMERA_RADIUS == pytest.approx(1.0 / c.FACE_RADIUS, rel=1e-12)
    assert c.CAMERA_RADIUS == pytest.approx(1.895087979372887, rel=1e-12)  # the value RAY_* and DEPTH_* are built on


def test_rays_sample_a_band_centred_on_the_orbit_centre():
    """Portrait rays (generator: linspace(RAY_START, RAY_END)) sample +-0.22 around the distance of the frame origin."""
    assert c.RAY_START < c.CAMERA_RADIUS < c.RAY_END
    assert (c.RAY_START + c.RAY_END) / 2 == pytest.approx(c.CAMERA_RADIUS, abs=1e-9)
    assert c.RAY_END - c.RAY_START == pytest.approx(0.44, abs=1e-9)


def test_depth_colour_range_lies_in_the_ray_range():
    """depth_to_uint8 divides by DEPTH_FAR - DEPTH_NEAR and colours the sampled depths."""
    assert c.RAY_START <= c.DEPTH_NEAR < c.DEPTH_FAR <= c.RAY_END
    assert c.DEPTH_FAR == pytest.approx(c.RAY_END, abs=1e-12)


def test_invalid_depth_lies_behind_every_sample():
    """Invalid manifold entries and empty rays get INVALID_DEPTH; sorting them by depth must put them last."""
    assert c.INVALID_DEPTH > c.RAY_END
    assert c.INVALID_DEPTH > c.DEPTH_FAR


def test_portrait_frame_is_left_right_symmetric():
    """Mirroring (data.dataset.flip_labels: yaw -> pi - yaw) maps x -> -x, so nothing may shift the frame in x."""
    assert c.ORIGIN_OFFSET[0] == 0.0
    assert c.SAMPLE_NET_CENTER[0] == 0.0


# ---------------------------------------------------------------------------------------------------------------------
# Manifolds and their textures


def test_levels_run_from_near_to_far():
    """The first level is the one nearest the camera (config.py); the scalar field falls with depth."""
    assert c.LEVELS_START > c.LEVELS_END


def test_texture_box_holds_the_face_centre():
    assert c.SAMPLE_SCALE > 0
    assert abs(c.SAMPLE_CENTER) < c.SAMPLE_SCALE  # canonical (0, 0), the face centre, is inside the box


def test_orthogonal_rays_span_z_from_plus_to_minus_0_2():
    """cameras.orthogonal_rays: z = ORTHO_ORIGIN_Z - t runs 0.2 (front) -> -0.2 (back); warmups.BOX reads
    (ORIGIN_Z - T_FAR, ORIGIN_Z - T_NEAR) as a (lo, hi) range."""
    assert c.ORTHO_T_NEAR < c.ORTHO_T_FAR
    assert c.ORTHO_ORIGIN_Z - c.ORTHO_T_NEAR == pytest.approx(0.2, abs=1e-12)
    assert c.ORTHO_ORIGIN_Z - c.ORTHO_T_FAR == pytest.approx(-0.2, abs=1e-12)


def test_planar_manifolds_lie_inside_the_orthogonal_rays():
    """init_planar_manifolds puts the levels at z in PLANAR_DEPTH_RANGE; every super-resolution ray must cross them."""
    from aniportrait.models.generator import PLANAR_DEPTH_RANGE

    z_front, z_back = PLANAR_DEPTH_RANGE
    assert c.ORTHO_ORIGIN_Z - c.ORTHO_T_FAR < z_back < z_front < c.ORTHO_ORIGIN_Z - c.ORTHO_T_NEAR


def test_alpha_and_step_constants_are_positive():
    # texture alpha 1 - exp(-DELTA_ALPHA * softplus(sigma)) is in [0, 1) only for DELTA_ALPHA > 0.
    assert c.DELTA_ALPHA > 0
    # intersections interpolate only where |delta s| > MIN_STEP: a non-positive value would divide by ~0.
    assert c.MIN_STEP > 0


def test_one_canonical_unit_is_about_1_18_smpl_metres():
    """render/mesh.py (METRES_PER_UNIT) and data/synth_scene.py convert with FACE_RADIUS * SMPL_SCALE."""
    assert c.FACE_RADIUS * c.SMPL_SCALE == pytest.approx(1.1775, abs=1e-3)


# ---------------------------------------------------------------------------------------------------------------------
# SMPL


def test_smpl_parents_is_a_tree_in_topological_order():
    """24 joints, root 0; every parent comes before its child (face_registration walks parents up to -1)."""
    assert len(c.SMPL_PARENTS) == 24
    assert c.SMPL_PARENTS[0] == -1
    assert all(0 <= parent < joint for joint, parent in enumerate(c.SMPL_PARENTS) if joint > 0)


def test_pose_joints_are_neck_collars_head_and_shoulders():
    """The comment's names, checked against the kinematic tree: 12-14 hang off the spine (9), the head (15) off the
    neck (12) and each shoulder (16, 17) off its collar (13, 14)."""
    parents = c.SMPL_PARENTS
    neck, left_collar, right_collar, head, left_shoulder, right_shoulder = c.POSE_JOINTS
    assert len(set(c.POSE_JOINTS)) == 6
    assert parents[neck] == parents[left_collar] == parents[right_collar] == 9
    assert parents[head] == neck
    assert parents[left_shoulder] == left_collar
    assert parents[right_shoulder] == right_collar


def test_pose_joints_agree_with_their_copies():
    from aniportrait.eval import control
    from aniportrait.render import keyframes

    assert control.POSE_JOINTS == c.POSE_JOINTS
    assert keyframes.NUM_POSE_JOINTS == len(c.POSE_JOINTS)


def test_mean_pose_adjusts_head_and_shoulders_mirror_symmetrically():
    """The canonical mean pose is its own mirror image (x -> -x): the head's adjust is unchanged by the mirror and
    the two shoulders' adjusts are each other's mirror."""
    assert set(c.MEAN_POSE_ADJUST) == {15, 16, 17}
    assert set(c.MEAN_POSE_ADJUST) <= set(c.POSE_JOINTS)
    mirror = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))

    def rotation(joint):
        return euler_zyx_to_matrix(torch.tensor(c.MEAN_POSE_ADJUST[joint], dtype=torch.float64))

    torch.testing.assert_close(mirror @ rotation(15) @ mirror, rotation(15))
    torch.testing.assert_close(mirror @ rotation(16) @ mirror, rotation(17))
    assert not torch.allclose(rotation(16), rotation(17))  # they do differ: the arms hang down on both sides


def test_smpl_mesh_is_a_closed_genus_zero_surface():
    """Euler: V - E + F = 2 with E = 3F / 2 for a closed triangle mesh, so F = 2V - 4."""
    assert c.SMPL_NUM_FACES == 2 * c.SMPL_NUM_VERTS - 4
