"""Portrait and face cameras (aniportrait.cameras): camera placement, look-at rotations, pixel ray directions, ray
samples along the portrait and face cameras, and the orthogonal rays of manifold super-resolution."""

import math

import pytest
import torch
import torch.nn.functional as F

from aniportrait import cameras, constants
from aniportrait.geometry import euler_zyx_to_matrix
from aniportrait.kernels._testing import assert_close

FRONT = math.pi / 2


def _random_cameras(n: int, seed: int = 0) -> torch.Tensor:
    """(pitch, yaw) around the frontal view, away from the poles (look_at is undefined straight above/below)."""
    g = torch.Generator().manual_seed(seed)
    return torch.tensor([[FRONT, FRONT]]) + 1.2 * (torch.rand(n, 2, generator=g) - 0.5)


def _random_rotations(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return euler_zyx_to_matrix(2.0 * (torch.rand(n, 3, generator=g) - 0.5))


def _assert_rotations(rotation: torch.Tensor) -> None:
    eye = torch.eye(3, dtype=rotation.dtype).expand_as(rotation)
    assert_close(rotation.transpose(1, 2) @ rotation, eye, name="R^T R")
    assert_close(torch.linalg.det(rotation), torch.ones(rotation.shape[0], dtype=rotation.dtype), name="det")


# ---------------------------------------------------------------------------------------------------------------------
# Portrait camera


def test_camera_origin_lies_at_the_radius():
    camera = _random_cameras(16)
    for radius in (constants.CAMERA_RADIUS, 0.5):
        origin = cameras.camera_origin(camera, radius)
        assert origin.shape == (16, 3)
        assert_close(origin.norm(dim=-1), torch.full((16,), radius))


def test_camera_origin_conventions():
    camera = torch.tensor([[FRONT, FRONT], [FRONT, FRONT + 0.3], [0.0, 1.0], [math.pi / 3, math.pi / 4]])
    origin = cameras.camera_origin(camera, 2.0)
    assert_close(origin[0], torch.tensor([0.0, 0.0, 2.0]))  # frontal: on +z
    assert origin[1, 0] < -0.5 and origin[1, 2] > 0  # a larger yaw moves the camera toward -x
    assert_close(origin[2], torch.tensor([0.0, 2.0, 0.0]))  # pitch 0: straight above (cos phi is the y component)
    s, c = math.sin(math.pi / 3), math.cos(math.pi / 3)
    expected = 2.0 * torch.tensor([s * math.cos(math.pi / 4), c, s * math.sin(math.pi / 4)])
    assert_close(origin[3], expected)
    assert cameras.camera_origin(torch.tensor([[FRONT, FRONT]])).norm() == pytest.approx(constants.CAMERA_RADIUS)


def test_look_at_rotation_is_a_rotation_looking_at_the_origin():
    origin = cameras.camera_origin(_random_cameras(16), 1.7)
    rotation = cameras.look_at_rotation(origin)
    assert rotation.shape == (16, 3, 3)
    _assert_rotations(rotation)
    # the camera's -z axis (OpenGL forward) points from the camera to the world origin
    forward = rotation @ torch.tensor([0.0, 0.0, -1.0])
    assert_close(forward, -origin / origin.norm(dim=-1, keepdim=True))
    # no roll: the right axis is horizontal and the up axis leans toward world +y
    assert_close(rotation[:, 1, 0], torch.zeros(16))
    assert (rotation[:, 1, 1] > 0).all()


def test_look_at_rotation_of_the_frontal_camera_is_the_identity():
    origin = cameras.camera_origin(torch.tensor([[FRONT, FRONT]], dtype=torch.float64))
    rotation = cameras.look_at_rotation(origin)
    assert rotation.dtype == torch.float64
    assert_close(rotation[0], torch.eye(3, dtype=torch.float64), atol=1e-12)


def test_camera_directions_centre_and_field_of_view():
    fov = 20.0
    dirs = cameras.camera_directions(5, fov)
    assert dirs.shape == (25, 3)
    assert_close(dirs.norm(dim=-1), torch.ones(25))
    assert_close(dirs[2 * 5 + 2], torch.tensor([0.0, 0.0, -1.0]))  # the centre pixel looks down -z
    tan = math.tan(math.radians(fov) / 2)
    # pixel centres span NDC [-1, 1]: the corner rays sit at x, y = +-tan(fov / 2) on the z = -1 plane
    for index, (sx, sy) in {0: (-1, 1), 4: (1, 1), 20: (-1, -1), 24: (1, -1)}.items():  # row 0 at the top
        d = dirs[index]
        assert d[2] < 0
        assert (d[0] / -d[2]).item() == pytest.approx(sx * tan, abs=1e-6)
        assert (d[1] / -d[2]).item() == pytest.approx(sy * tan, abs=1e-6)
    # the middle-row edge rays are the full horizontal field of view apart
    angle = math.degrees(math.acos(torch.dot(dirs[10], dirs[14]).item()))
    assert angle == pytest.approx(fov, abs=1e-3)


def test_camera_directions_layout_is_row_major():
    dirs = cameras.camera_directions(4, dtype=torch.float64).reshape(4, 4, 3)
    assert dirs.dtype == torch.float64
    assert (dirs[:, 1:, 0] > dirs[:, :-1, 0]).all()  # x grows along a row
    assert (dirs[1:, :, 1] < dirs[:-1, :, 1]).all()  # y falls down the rows
    plane = dirs[..., :2] / -dirs[..., 2:]  # where the rays cross z = -1
    assert_close(plane[:, :, 1], plane[:, :1, 1].expand(4, 4), atol=1e-12)  # a row shares its y
    assert_close(plane[:, :, 0], plane[:1, :, 0].expand(4, 4), atol=1e-12)  # a column shares its x
    steps = plane[0, 1:, 0] - plane[0, :-1, 0]
    assert_close(steps, steps[:1].expand(3), atol=1e-12)  # evenly spaced pixel centres


def test_camera_ray_directions_rotate_the_camera_directions():
    camera = _random_cameras(4)
    dirs = cameras.camera_ray_directions(camera, 3, radius=1.3, fov_degrees=15.0)
    assert dirs.shape == (4, 9, 3)
    origin = cameras.camera_origin(camera, 1.3)
    assert_close(dirs[:, 4], -origin / origin.norm(dim=-1, keepdim=True))  # the centre ray hits the world origin
    rotation = cameras.look_at_rotation(origin)
    local = torch.einsum("bji,brj->bri", rotation, dirs)  # back to camera space
    assert_close(local, cameras.camera_directions(3, 15.0).expand(4, -1, -1))


def test_portrait_rays_shapes_t_range_and_offset():
    camera = _random_cameras(2)
    start, end, offset = 1.5, 2.1, (0.1, -0.2, 0.3)
    points, origin = cameras.portrait_rays(camera, 4, 5, ray_start=start, ray_end=end, origin_offset=offset)
    assert points.shape == (2, 16, 5, 3) and origin.shape == (2, 3)
    assert_close(origin, cameras.camera_origin(camera))  # the returned origins are not shifted
    rel = points - torch.tensor(offset) - origin[:, None, None, :]
    t = rel.norm(dim=-1)
    assert_close(t, torch.linspace(start, end, 5).expand(2, 16, 5))
    dirs = cameras.camera_ray_directions(camera, 4)
    assert_close(rel / t[..., None], dirs[:, :, None, :].expand(-1, -1, 5, -1))


def test_portrait_rays_default_offset_and_depth_range():
    camera = torch.tensor([[FRONT, FRONT]])
    points, origin = cameras.portrait_rays(camera, 3, 2)
    centre = points[0, 4]  # the centre ray of the frontal camera runs down the z axis, shifted by ORIGIN_OFFSET
    expected_z = constants.CAMERA_RADIUS - torch.tensor([constants.RAY_START, constants.RAY_END])
    assert_close(centre[:, 2], expected_z + constants.ORIGIN_OFFSET[2])
    assert_close(centre[:, :2], torch.tensor(constants.ORIGIN_OFFSET[:2]).expand(2, 2))
    assert_close(origin[0], torch.tensor([0.0, 0.0, constants.CAMERA_RADIUS]))


def test_orthogonal_rays_grid():
    side, samples = 4, 3
    grid = cameras.orthogonal_rays(side, samples, batch=2, dtype=torch.float64)
    assert grid.shape == (2, side * side, samples, 3) and grid.dtype == torch.float64
    torch.testing.assert_close(grid[0], grid[1])
    cells = grid[0].reshape(side, side, samples, 3)
    span = torch.linspace(-constants.SAMPLE_SCALE, constants.SAMPLE_SCALE, side, dtype=torch.float64)
    assert_close(cells[..., 0], span[None, :, None].expand(side, side, samples), atol=1e-12)  # x by column
    y = constants.SAMPLE_CENTER + span
    assert_close(cells[..., 1], y[:, None, None].expand(side, side, samples), atol=1e-12)  # y by row
    assert cells[0, 0, 0, 1] < cells[-1, 0, 0, 1]  # row 0 is the lowest y
    z = torch.tensor([0.2, 0.0, -0.2], dtype=torch.float64)  # front to back
    assert_close(cells[..., 2], z.expand(side, side, samples), atol=1e-12)


def test_centred_texels_lie_where_their_lookups_read_them():
    """``centred``: texel j at the centre of the cell an align_corners=False lookup reads it in, for any side, so a
    texture holding each texel's own x (or y) reads back the looked-up point's x (y) inside the box; the linspace
    layout reads back side / (side - 1) times it."""
    points = torch.rand(1, 1, 300, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 1.4 - 0.7
    for side in (1, 5, 32):
        grid = cameras.orthogonal_rays(side, 2, dtype=torch.float64, centred=True, lookup_side=7)  # lookup_side unused
        cells = grid[0, :, 0, :2].reshape(side, side, 2)
        j = torch.arange(side, dtype=torch.float64)
        expected = constants.SAMPLE_SCALE * ((2 * j + 1) / side - 1)
        assert_close(cells[0, :, 0], expected, atol=1e-12)
        assert_close(cells[:, 0, 1], constants.SAMPLE_CENTER + expected, atol=1e-12)
        texture = torch.stack([cells[..., 0], cells[..., 1] - constants.SAMPLE_CENTER]).unsqueeze(0)
        if side < 5:
            continue  # one texel: a constant texture
        inner = points * (1 - 1 / side)  # inside the outermost texels' centres, where bilinear reads are exact
        read = F.grid_sample(texture, inner, mode="bilinear", align_corners=False)[0, :, 0].T
        assert_close(read, inner[0, 0] * constants.SAMPLE_SCALE, atol=1e-12)
    linspace = cameras.orthogonal_rays(32, 2, dtype=torch.float64)[0, :, 0, :2].reshape(32, 32, 2)
    texture = torch.stack([linspace[..., 0], linspace[..., 1] - constants.SAMPLE_CENTER]).unsqueeze(0)
    inner = points * 0.9
    read = F.grid_sample(texture, inner, mode="bilinear", align_corners=False)[0, :, 0].T
    assert_close(read, inner[0, 0] * constants.SAMPLE_SCALE * 32 / 31, atol=1e-12)


# ---------------------------------------------------------------------------------------------------------------------
# Face camera


def _joints(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 24, 3, generator=g, dtype=torch.float64)


def test_posed_head_transform_mean_pose_is_identity():
    joints = _joints(2)
    rotation, position = cameras.posed_head_transform(torch.zeros(2, 6, 3), joints)
    assert rotation.dtype == position.dtype == torch.float64  # in joints.dtype
    assert_close(rotation, torch.eye(3, dtype=torch.float64).expand(2, 3, 3), atol=1e-12)
    assert_close(position, joints[:, 15], atol=1e-12)


def test_posed_head_transform_forward_kinematics():
    joints = _joints(3, seed=1)
    pose = torch.zeros(3, 6, 3)
    pose[0, 3] = torch.tensor([0.3, -0.2, 0.1])  # head only: turns in place
    pose[1, 0] = torch.tensor([0.0, 0.5, 0.0])  # neck only: the head swings about the neck joint
    pose[2, 0], pose[2, 3] = torch.tensor([0.2, 0.1, -0.3]), torch.tensor([-0.1, 0.4, 0.2])
    rotation, position = cameras.posed_head_transform(pose, joints)
    neck, head = euler_zyx_to_matrix(pose[:, 0].double()), euler_zyx_to_matrix(pose[:, 3].double())
    assert_close(rotation[0], head[0])
    assert_close(position[0], joints[0, 15])
    arm = joints[:, 15] - joints[:, 12]
    assert_close((position[1] - joints[1, 12]).norm(), arm[1].norm())  # a rigid swing keeps the neck-head length
    assert_close(position[1], joints[1, 12] + neck[1] @ arm[1])
    assert_close(rotation[2], neck[2] @ head[2])
    assert_close(position[2], joints[2, 12] + neck[2] @ arm[2])
    _assert_rotations(rotation)


def test_face_center_offset_in_the_head_frame():
    rotation, position = _random_rotations(3), torch.randn(3, 3)
    offset = torch.tensor([0.1, -0.2, 0.3])
    centre = cameras.face_center((rotation, position), offset)
    assert_close(centre, position + rotation @ offset)
    per_sample = torch.randn(3, 3)
    assert_close(
        cameras.face_center((rotation, position), per_sample), position + (rotation @ per_sample[..., None])[..., 0]
    )
    # at the identity the default offset is added as it is
    assert_close(
        cameras.face_center((torch.eye(3)[None], torch.zeros(1, 3))), torch.tensor([cameras.FACE_CENTER_OFFSET])
    )


def test_face_center_accepts_matrices():
    rotation, position = _random_rotations(2), torch.randn(2, 3)
    matrix = torch.eye(4).repeat(2, 1, 1)
    matrix[:, :3, :3], matrix[:, :3, 3] = rotation, position
    expected = cameras.face_center((rotation, position))
    assert_close(cameras.face_center(matrix), expected)
    assert_close(cameras.face_center(matrix[:, :3]), expected)


@pytest.mark.parametrize(
    "head",
    [
        torch.eye(4)[None, :2],  # [1, 2, 4]
        torch.eye(4),  # no batch
        (torch.eye(3), torch.zeros(3)),  # no batch
        (torch.eye(3)[None], torch.zeros(2, 3)),  # batches differ
        (torch.eye(4)[None], torch.zeros(1, 3)),  # not a 3 x 3 rotation
    ],
)
def test_face_center_refuses_bad_transforms(head):
    with pytest.raises(ValueError, match="head_transform must be"):
        cameras.face_center(head)


def test_face_camera_follows_the_head():
    rotation, position = _random_rotations(4, seed=2), torch.randn(4, 3)
    centre = cameras.face_center((rotation, position))
    origin, cam = cameras.face_camera((rotation, position), distance=0.7)
    # in front of the face along the head's forward (+z) axis, looking back at the face centre
    assert_close(origin, centre + 0.7 * rotation[:, :, 2])
    _assert_rotations(cam)
    assert_close(cam, rotation)  # the frontal face camera's rotation (identity) carried by the head
    points, ray_origin = cameras.face_rays((rotation, position), 3, 3, distance=0.7, ray_start=0.6, ray_end=0.8)
    torch.testing.assert_close(ray_origin, origin)
    assert_close(points[:, 4, 1], centre)  # the centre ray's middle sample is the face centre itself


def test_face_camera_view_angles():
    rotation, position = _random_rotations(2, seed=3), torch.randn(2, 3)
    head = (rotation, position)
    default = cameras.face_camera(head)
    frontal = cameras.face_camera(head, view=torch.tensor([cameras.FRONTAL_VIEW]).expand(2, 2))
    assert_close(frontal[0], default[0])
    assert_close(frontal[1], default[1])
    centre = cameras.face_center(head)
    view = torch.tensor([[FRONT - 0.2, FRONT + 0.5]]).expand(2, 2)
    origin, cam = cameras.face_camera(head, view=view)
    local = torch.einsum("bji,bj->bi", rotation, origin - centre)  # in the head's frame
    assert_close(local, cameras.camera_origin(view, cameras.FACE_CAMERA_DISTANCE))
    assert (local[:, 0] < 0).all()  # a larger yaw: toward the head's -x
    _assert_rotations(cam)
    assert_close(cam[:, :, 2], (origin - centre) / cameras.FACE_CAMERA_DISTANCE)  # backward axis: away from the face
    assert_close((cam[:, :, 0] * rotation[:, :, 1]).sum(-1), torch.zeros(2))  # no roll: right is level with the head


def test_face_camera_view_origin():
    head = (_random_rotations(2, seed=4), torch.randn(2, 3))
    centre = cameras.face_center(head)
    target = torch.tensor([[0.3, 0.1, 3.0], [-2.0, 0.5, 1.0]])
    origin, cam = cameras.face_camera(head, target, distance=0.5)
    towards = (target - centre) / (target - centre).norm(dim=-1, keepdim=True)
    assert_close(origin, centre + 0.5 * towards)
    assert_close(cam @ torch.tensor([0.0, 0.0, -1.0]), -towards)  # looks at the face centre
    with pytest.raises(ValueError, match="not both"):
        cameras.face_camera(head, target, view=torch.zeros(2, 2))


def test_face_rays_shapes_and_range():
    head = (_random_rotations(2, seed=5), torch.randn(2, 3))
    points, origin = cameras.face_rays(head, 5, 4)
    assert points.shape == (2, 25, 4, 3) and origin.shape == (2, 3)
    rel = points - origin[:, None, None, :]  # no origin offset
    t = torch.linspace(cameras.FACE_RAY_START, cameras.FACE_RAY_END, 4)
    assert_close(rel.norm(dim=-1), t.expand(2, 25, 4))
    _, rotation = cameras.face_camera(head)
    dirs = torch.einsum("bij,rj->bri", rotation, cameras.camera_directions(5, cameras.FACE_CAMERA_FOV_DEGREES))
    assert_close(rel[:, :, -1] / cameras.FACE_RAY_END, dirs)
    # the middle row's edge rays are the 12 degree field of view apart: their samples at t = 1 are 2 sin(6 deg) apart
    row = cameras.face_rays(head, 5, 3)[0].reshape(2, 5, 5, 3, 3)[:, 2]
    chord = (row[:, 4, 1] - row[:, 0, 1]).norm(dim=-1)
    assert_close(chord, torch.full((2,), 2 * math.sin(math.radians(cameras.FACE_CAMERA_FOV_DEGREES / 2))))
