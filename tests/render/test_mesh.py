"""export-mesh: the mesh is the rendered surface (depth and colour agree with the frame), in every format."""

import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from aniportrait import constants
from aniportrait.cameras import camera_origin, camera_ray_directions
from aniportrait.cli import main
from aniportrait.models.generator import sample_identity_latents
from aniportrait.pretrained import body_for_checkpoint, builtin_generator
from aniportrait.render.mesh import METRES_PER_UNIT, OPAQUE, portrait_mesh, surface_mesh
from aniportrait.render.video import to_uint8

trimesh = pytest.importorskip("trimesh", reason="export-mesh needs trimesh (the test extra installs it)")

# Where the frame is opaque, the mesh's distance from the camera and the rendered depth map agree within this
# (renderer units; about 6 mm). They differ at all because the release measures depth to the canonical (unposed)
# intersections, the mesh to the posed ones: at the rest pose the two are nearly the same points.
DEPTH_BOUND = 0.005


@pytest.fixture(scope="module")
def model():
    generator, metadata, valid_index = builtin_generator()
    body = body_for_checkpoint(metadata, valid_index, None)
    identity = generator.prepare_identity(*sample_identity_latents(generator.config, [1], id_bank=generator.id_bank))
    return generator, body, identity


@pytest.mark.parametrize("yaw", [0.0, 0.4])
def test_mesh_matches_the_rendered_frame(model, yaw):
    generator, body, identity = model
    camera = torch.tensor([[math.pi / 2, math.pi / 2 + yaw]])
    pose, expression = torch.zeros(1, 6, 3), torch.zeros(1, 64)
    with torch.no_grad():
        frame = generator.render_frame(identity, body, camera, pose, expression)
    vertices, faces, colors = portrait_mesh(generator, body, identity, camera, pose, expression)
    side = frame["image"].shape[-1]
    with torch.no_grad():
        opacity = generator.render_surface(identity, body, camera, pose, expression)["opacity"][0]
    opaque = (opacity > OPAQUE).numpy()
    assert len(vertices) == opaque.sum() > 0.2 * side * side and len(faces) > len(vertices)
    # Project each vertex with the render camera: it lies on its own pixel's ray ...
    points = torch.from_numpy(vertices).double() / METRES_PER_UNIT
    eye = (camera_origin(camera)[0] + torch.tensor(constants.ORIGIN_OFFSET)).double()
    rays = camera_ray_directions(camera, side)[0].reshape(side, side, 3)[torch.from_numpy(opaque)].double()
    along = points - eye
    cos = (along / along.norm(dim=-1, keepdim=True) * rays).sum(-1)
    assert cos.min() > 1 - 1e-6
    # ... at the rendered depth ...
    depth = frame["depth"][0, 0][torch.from_numpy(opaque)].double()
    distance = (points - camera_origin(camera)[0].double()).norm(dim=-1)
    assert (distance - depth).abs().max() < DEPTH_BOUND
    # ... with the rendered colour.
    assert np.array_equal(colors, to_uint8(frame["image"][0])[opaque])
    # Triangles face the camera.
    corners = points[torch.from_numpy(faces)]
    normals = torch.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0], dim=-1)
    assert ((normals * (eye - corners.mean(1))).sum(-1) > 0).float().mean() > 0.99


def test_surface_mesh_cuts_depth_jumps_and_skips_empty_pixels():
    H, W = 6, 8
    y, x = np.meshgrid(np.arange(H, dtype=float), np.arange(W, dtype=float), indexing="ij")
    points = np.stack([x * 0.01, -y * 0.01, np.where(x < 4, 0.0, -1.0)], -1)  # a 1 m step between columns 3 and 4
    colors = np.zeros((H, W, 3), np.uint8)
    opaque = np.ones((H, W), bool)
    opaque[0, 0] = False
    vertices, faces, vertex_colors = surface_mesh(points, colors, opaque)
    assert len(vertices) == H * W - 1 and len(vertex_colors) == len(vertices)
    # Two triangles per 2x2 block of pixels on one side of the step (3 + 3 column pairs, H - 1 row pairs), none
    # across it, and the one triangle of the corner block that uses the empty pixel is gone.
    assert len(faces) == 2 * (H - 1) * (3 + 3) - 1
    spans = np.ptp(vertices[faces][..., 2], axis=1)
    assert spans.max() == 0


@pytest.mark.parametrize("suffix", [".glb", ".ply", ".obj"])
def test_cli_writes_each_format(tmp_path, suffix):
    out = tmp_path / f"portrait{suffix}"
    result = CliRunner().invoke(main, ["export-mesh", "--seed", "1", "--device", "cpu", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "vertices" in result.output and sorted(p.name for p in tmp_path.iterdir()) == [out.name]
    mesh = trimesh.load(out, force="mesh", process=False)
    assert len(mesh.vertices) > 1000 and len(mesh.faces) > 1000
    size = mesh.bounds[1] - mesh.bounds[0]
    assert 0.2 < size[1] < 1.0, size  # a head and shoulders, in metres
    if suffix != ".obj":  # trimesh reads the OBJ's colours back only as texture-less materials
        assert mesh.visual.vertex_colors[:, :3].std() > 5


def test_cli_uses_the_chosen_keyframe(tmp_path):
    expression = np.zeros((2, 64), np.float32)
    expression[1, 0] = 3.0  # row 1: mouth open
    np.save(tmp_path / "e.npy", expression)
    meshes = []
    for row in (0, 1):
        out = tmp_path / f"m{row}.ply"
        args = ["export-mesh", "--seed", "1", "--device", "cpu", "--expression", str(tmp_path / "e.npy")]
        result = CliRunner().invoke(main, [*args, "--keyframe", str(row), "-o", str(out)])
        assert result.exit_code == 0, result.output
        meshes.append(trimesh.load(out, process=False))
    assert not np.array_equal(meshes[0].vertices, meshes[1].vertices)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-o", "{tmp}/m.stl"], "unknown mesh format"),
        (["-o", "{tmp}/m"], "unknown mesh format"),
        (["-o", "{tmp}/no/such/m.glb"], "folder does not exist"),
        (["--keyframe", "1", "-o", "{tmp}/m.glb"], "--keyframe 1: the keyframes have 1 rows"),
        (["--expression", "{tmp}/missing.npy", "-o", "{tmp}/m.glb"], "not found"),
        (["--device", "gpu0", "-o", "{tmp}/m.glb"], "unknown device"),
    ],
    ids=["stl", "no-suffix", "no-folder", "keyframe", "missing-file", "device"],
)
def test_cli_bad_input(tmp_path, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = CliRunner().invoke(main, ["export-mesh", *args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output
    assert list(tmp_path.iterdir()) == []
