"""Regenerate docs/mesh.png: the built-in default's exported mesh (seed 1), seen from three sides.

Runs `aniportrait export-mesh --seed 1 -o mesh.ply` from the frontal camera, then draws the triangles with their
vertex colours from the front, at 45 degrees and from the side, so that the relief (one-sided, as the camera saw
it) shows. Needs matplotlib and trimesh.

    python docs/make_mesh_picture.py
"""

import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import trimesh
from mpl_toolkits.mplot3d.art3d import Poly3DCollection

OUT = Path(__file__).with_name("mesh.png")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mesh.ply"
        command = [
            sys.executable,
            "-m",
            "aniportrait",
            "export-mesh",
            "--seed",
            "1",
            "--device",
            "cpu",
            "-o",
            str(path),
        ]
        subprocess.run(command, check=True)
        mesh = trimesh.load(path, process=False)
    triangles = mesh.vertices[mesh.faces]  # [F, 3, 3], metres, y up
    colours = mesh.visual.vertex_colors[mesh.faces][..., :3].mean(axis=1) / 255.0
    fig = plt.figure(figsize=(9, 3.4), dpi=110)
    centre = mesh.vertices.mean(axis=0)
    half = 0.5 * (mesh.vertices.max(axis=0) - mesh.vertices.min(axis=0)).max()
    for i, (azimuth, title) in enumerate(((90, "front"), (45, "45 degrees"), (0, "side"))):
        ax = fig.add_subplot(1, 3, i + 1, projection="3d")
        # matplotlib's z is up: show (x, z, y).
        ax.add_collection3d(Poly3DCollection(triangles[..., [0, 2, 1]], facecolors=colours, linewidths=0))
        for set_limits, c in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), centre[[0, 2, 1]]):
            set_limits(c - half, c + half)
        ax.view_init(elev=10, azim=-azimuth)
        ax.set_box_aspect((1, 1, 1))
        ax.set_axis_off()
        ax.set_title(title, fontsize=9)
    fig.suptitle(f"export-mesh, built-in default, seed 1: {len(mesh.vertices):,} vertices", fontsize=10)
    fig.savefig(OUT, bbox_inches="tight")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
