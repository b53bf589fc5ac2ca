"""`aniportrait export-mesh`: each format, the chosen keyframe, and bad input (the mesh itself is tested in
``tests/render/test_mesh.py``)."""

import numpy as np
import pytest
from click.testing import CliRunner

from aniportrait.cli import main

trimesh = pytest.importorskip("trimesh", reason="export-mesh needs trimesh (the test extra installs it)")


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
