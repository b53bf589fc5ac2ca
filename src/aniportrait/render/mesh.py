"""The generated portrait as a coloured triangle mesh: the surface one frame shows, from its camera.

Method: a depth map lifted to 3-D. :meth:`AniPortraitGenerator.render_surface` gives, for each pixel of the
frame, the world point where its ray meets the portrait (the ray distance composited with the colour's weights)
and its rendered colour. Neighbouring opaque pixels become two triangles per 2x2 block; a triangle is dropped
where an edge spans a depth jump (an occlusion boundary). Why this and not the alternatives:

- it is exactly what the renderer shows, with the rendered colours, posed and expressed, and it needs no second
  evaluation of the radiance field;
- an iso-surface of the scalar field would show the manifold stack (24 nested shells in the release), not one
  surface, and a single level set is only part of the visible surface;
- the manifold surfaces themselves live in canonical space; posing them needs forward skinning and the
  expression deformation's inverse, neither of which the model has.

The cost: one side only (what the camera sees), at the frame's resolution. Render several cameras for more.

Units and frame: metres, y up, the renderer's world frame: the face centre near the origin and the frontal camera
(pitch = yaw = pi/2) on the +z axis, looking down -z. One renderer unit is ``FACE_RADIUS * SMPL_SCALE`` metres.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from aniportrait import constants
from aniportrait.kernels._registry import Impl

METRES_PER_UNIT = constants.FACE_RADIUS * constants.SMPL_SCALE  # about 1.18 m
MESH_FORMATS = (".glb", ".ply", ".obj")
OPAQUE = 0.5  # a pixel is part of the surface where its compositing weights sum to more than this
DEPTH_JUMP = 4.0  # a triangle edge longer than this many times the median pixel spacing crosses an occlusion


def surface_mesh(
    points: np.ndarray, colors: np.ndarray, opaque: np.ndarray, depth_jump: float = DEPTH_JUMP
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Triangulate a grid of surface points.

    Args:
        points: [H, W, 3] float world points of the pixels.
        colors: [H, W, 3] uint8 colours.
        opaque: [H, W] bool: pixels that belong to the surface.
        depth_jump: drop triangles with an edge longer than this many median edge lengths.

    Returns:
        vertices [N, 3] float32 (one per opaque pixel, row-major), faces [F, 3] int64 (counter-clockwise seen
        from the camera), vertex colours [N, 3] uint8.
    """
    H, W = opaque.shape
    index = np.full((H, W), -1, dtype=np.int64)
    index[opaque] = np.arange(int(opaque.sum()))
    a, b = index[:-1, :-1], index[:-1, 1:]  # top-left, top-right
    c, d = index[1:, :-1], index[1:, 1:]  # bottom-left, bottom-right
    # Rows run down the image and columns right, so (a, c, b) and (b, c, d) wind counter-clockwise on screen.
    faces = np.concatenate([np.stack([a, c, b], -1).reshape(-1, 3), np.stack([b, c, d], -1).reshape(-1, 3)])
    faces = faces[(faces >= 0).all(axis=1)]
    vertices = points[opaque].astype(np.float32)
    if len(faces):
        corners = vertices[faces]  # [F, 3, 3]
        edges = np.linalg.norm(corners - np.roll(corners, 1, axis=1), axis=-1).max(axis=1)
        faces = faces[edges <= depth_jump * np.median(edges)]
    return vertices, faces, colors[opaque].astype(np.uint8)


@torch.no_grad()
def portrait_mesh(generator, body, identity, camera, pose, expression, *, impl: Impl = "auto"):
    """The mesh of one frame: ``(vertices [N, 3] in metres, faces [F, 3], colours [N, 3] uint8)``.

    ``identity`` is a batch-1 :class:`~aniportrait.models.generator.Identity`; camera [1, 2], pose [1, 6, 3] and
    expression [1, 64] are tensors on the generator's device.
    """
    from aniportrait.images import to_uint8

    surface = generator.render_surface(identity, body, camera, pose, expression, impl=impl)
    points = surface["points"][0].double().cpu().numpy() * METRES_PER_UNIT
    colors = to_uint8(surface["image"][0])
    opaque = (surface["opacity"][0] > OPAQUE).cpu().numpy()
    return surface_mesh(points, colors, opaque)


def write_mesh(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray) -> None:
    """Write a vertex-coloured mesh as GLB, PLY or OBJ (by extension) through trimesh, atomically."""
    import trimesh

    from aniportrait.staging import atomic_write

    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in MESH_FORMATS:
        raise ValueError(f"{path}: unknown mesh format {suffix or '(none)'}; use {', '.join(MESH_FORMATS)}")
    rgba = np.concatenate([colors, np.full((len(colors), 1), 255, np.uint8)], axis=1)
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, vertex_colors=rgba, process=False)
    atomic_write(path, lambda tmp: mesh.export(tmp, file_type=suffix[1:]))
