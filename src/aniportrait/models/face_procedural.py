"""A procedural 3DMM: a face-shaped surface in ``BFM_model_front``'s layout, generated from scratch (no BFM data),
whose leading expression coefficients have the meanings of :data:`~aniportrait.models.face3dmm.EXPRESSION_MEANING`."""

from __future__ import annotations

import numpy as np
import torch

from aniportrait.models.face3dmm import (
    BFM_UNIT_METRES,
    EXPRESSION_MEANING,
    NUM_EXP,
    NUM_ID,
    NUM_LANDMARKS,
    NUM_TEX,
    Face3DMM,
)

# ---------------------------------------------------------------------------------------------------------------------
# Procedural 3DMM: a face-shaped surface patch in BFM_model_front's layout, generated from scratch (no BFM data)
#
# Geometry is built in millimetres in a face frame with the eye line at y = 0 (x to the subject's left, y up, z out
# of the face) and converted to decimetres (BFM units) at the end, after recentring like Deep3DFaceRecon.

# The 68 landmarks of an average frontal face (mm), iBUG 300-W order. Jaw 0-16 runs from the subject's right ear
# (image left, -x) over the chin; brows 17-21 (right) and 22-26 (left) run outer to inner to outer; nose 27-30 root to
# tip, 31-35 nostrils; eyes 36-41 (right: outer, upper x2, inner, lower x2) and 42-47 (left: inner, upper x2, outer,
# lower x2); outer lips 48-59 from the right corner over the upper lip, inner lips 60-67.
# fmt: off
FACE_TEMPLATE_MM = (
    # jaw 0-16
    (-70.0, -5.0), (-69.0, -20.0), (-67.0, -35.0), (-64.0, -50.0), (-58.0, -64.0), (-49.0, -77.0), (-38.0, -87.0),
    (-22.0, -95.0), (0.0, -98.0), (22.0, -95.0), (38.0, -87.0), (49.0, -77.0), (58.0, -64.0), (64.0, -50.0),
    (67.0, -35.0), (69.0, -20.0), (70.0, -5.0),
    # brows 17-26
    (-55.0, 12.0), (-45.0, 19.0), (-33.0, 22.0), (-21.0, 21.0), (-10.0, 18.0),
    (10.0, 18.0), (21.0, 21.0), (33.0, 22.0), (45.0, 19.0), (55.0, 12.0),
    # nose 27-35
    (0.0, 2.0), (0.0, -10.0), (0.0, -20.0), (0.0, -30.0),
    (-14.0, -37.0), (-7.0, -39.0), (0.0, -40.0), (7.0, -39.0), (14.0, -37.0),
    # eyes 36-47
    (-45.0, 0.0), (-37.0, 5.0), (-23.0, 5.0), (-15.0, 0.0), (-23.0, -4.0), (-37.0, -4.0),
    (15.0, 0.0), (23.0, 5.0), (37.0, 5.0), (45.0, 0.0), (37.0, -4.0), (23.0, -4.0),
    # outer lips 48-59, inner lips 60-67
    (-25.0, -58.0), (-16.0, -52.0), (-7.0, -49.0), (0.0, -50.0), (7.0, -49.0), (16.0, -52.0), (25.0, -58.0),
    (16.0, -65.0), (7.0, -68.0), (0.0, -69.0), (-7.0, -68.0), (-16.0, -65.0),
    (-21.0, -58.0), (-7.0, -56.0), (0.0, -56.5), (7.0, -56.0), (21.0, -58.0), (7.0, -60.5), (0.0, -61.0),
    (-7.0, -60.5),
)
# fmt: on
TEMPLATE_HALF_WIDTH_MM = 70.0  # |x| of the jaw landmarks 0 and 16
TEMPLATE_NOSE_TIP = 30  # landmark id of the nose tip
# The face patch: the unit square grid mapped onto an ellipse with these semi-axes and centre (mm).
PATCH_SEMI_AXES_MM = (78.0, 88.0)
PATCH_CENTRE_Y_MM = -15.0
# Base depth: an ellipsoid cap z = DEPTH * sqrt(1 - (x / AX)^2 - ((y - CY) / AY)^2) (mm); cheeks recede from the nose.
BASE_DEPTH_MM, BASE_AXES_MM, BASE_CENTRE_Y_MM = 70.0, (88.0, 112.0), -12.0
MOUTH_LINE_MM = -58.0  # y of the lip line (the corners 48 and 54)
BROW_LIFT_FROM_MM, BROW_LIFT_FULL_MM = 6.0, 12.0  # the brow raise ramps up between these heights (above the lids)
LIP_SOFTNESS_MM = 1.0  # width of the logistic step that separates upper from lower lip motion
PROCEDURAL_MIN_GRID = 25  # smallest grid side (625 vertices) that still resolves 68 distinct landmark vertices
# Leading expression amplitudes (mm per unit coefficient): mouth open (lower lip drop), smile, eye closure (1 brings the
# upper lid landmarks down to the lower ones), brow raise. Sized like the synthetic data engine's
# (data/synth_scene.py: jaw drop 0.012 canonical units at e0 = 1.5, brows 0.009 per unit, e2 = 1 closes the eyes).
MOUTH_OPEN_MM, SMILE_MM, EYE_CLOSE_MM, BROW_RAISE_MM = 9.0, 6.0, 11.0, 10.0
BUMP_EXPRESSION_MM = 1.5  # amplitude of the first small localized expression bump (decays with the index)
BUMP_IDENTITY_MM = 1.5  # amplitude of the first random smooth identity field (decays with the index)
SKIN_RGB, LIP_RGB, EYE_RGB, BROW_RGB = (
    (200.0, 160.0, 140.0),
    (170.0, 90.0, 90.0),
    (90.0, 70.0, 60.0),
    (80.0, 60.0, 50.0),
)


def _bump(x: np.ndarray, y: np.ndarray, centre: tuple[float, float], radii: tuple[float, float]) -> np.ndarray:
    """Compactly supported smooth bump (1 - q)^3 with q the squared elliptical distance; C2, zero for q >= 1."""
    q = ((x - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2
    return np.clip(1.0 - q, 0.0, None) ** 3


def _gauss(x: np.ndarray, y: np.ndarray, centre: tuple[float, float], sigma: tuple[float, float]) -> np.ndarray:
    return np.exp(-0.5 * (((x - centre[0]) / sigma[0]) ** 2 + ((y - centre[1]) / sigma[1]) ** 2))


def _step(value: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Smoothstep from 0 at ``lo`` to 1 at ``hi`` (either order)."""
    t = np.clip((value - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _logistic(value: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * value))


def _nose_height(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Nose relief (mm): a ridge from the root (y = 8) growing to the tip (y = -28), falling off under it."""
    t = _step(y, 8.0, -28.0)
    under = _step(y, -30.0, -42.0)
    width = 5.0 + 5.0 * t
    return (6.0 + 18.0 * t) * (1.0 - under) * _step(y, 12.0, 8.0) * np.exp(-0.5 * (x / width) ** 2)


def _mean_depth(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Depth z(x, y) of the mean face (mm): ellipsoid cap plus nose, eye sockets, brows, lips, chin, cheekbones."""
    ax, ay = BASE_AXES_MM
    z = BASE_DEPTH_MM * np.sqrt(np.clip(1.0 - (x / ax) ** 2 - ((y - BASE_CENTRE_Y_MM) / ay) ** 2, 0.02, 1.0))
    z = z + _nose_height(x, y)
    for side in (-1.0, 1.0):
        z = z + 7.0 * _gauss(x, y, (13.0 * side, -35.0), (5.0, 5.0))  # alar wings
        z = z - 8.0 * _gauss(x, y, (30.0 * side, 1.0), (13.0, 8.0))  # eye sockets
        z = z + 3.0 * _gauss(x, y, (30.0 * side, 0.0), (9.0, 5.0))  # eyeballs under the lids
        z = z + 4.0 * _gauss(x, y, (30.0 * side, 17.0), (18.0, 6.0))  # brow ridges
        z = z + 4.0 * _gauss(x, y, (42.0 * side, -22.0), (14.0, 12.0))  # cheekbones
    z = z + 5.0 * _gauss(x, y, (0.0, -52.0), (16.0, 4.0)) + 5.0 * _gauss(x, y, (0.0, -64.0), (15.0, 4.0))  # lips
    z = z - 2.0 * _gauss(x, y, (0.0, MOUTH_LINE_MM - 0.5), (18.0, 1.5))  # lip line
    return z + 6.0 * _gauss(x, y, (0.0, -88.0), (16.0, 9.0))  # chin


def _patch_grid(side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y [side^2] (mm) of the square grid mapped onto the face ellipse, and its triangles [2 (side-1)^2, 3]."""
    u, v = np.meshgrid(np.linspace(-1.0, 1.0, side), np.linspace(-1.0, 1.0, side))  # row = v (bottom to top)
    # Square-to-disc map (x = u sqrt(1 - v^2 / 2), y = v sqrt(1 - u^2 / 2)): smooth, orientation preserving.
    x = PATCH_SEMI_AXES_MM[0] * u * np.sqrt(1.0 - 0.5 * v**2)
    y = PATCH_CENTRE_Y_MM + PATCH_SEMI_AXES_MM[1] * v * np.sqrt(1.0 - 0.5 * u**2)
    a = (np.arange(side - 1)[:, None] * side + np.arange(side - 1)[None]).reshape(-1)
    b, c = a + 1, a + side
    # Counter-clockwise seen from +z (the front): (a, b, d) and (a, d, c) with d = c + 1.
    triangles = np.concatenate([np.stack([a, b, c + 1], 1), np.stack([a, c + 1, c], 1)])
    return x.reshape(-1), y.reshape(-1), triangles.astype(np.int64)


def _snap_landmarks(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """[68] distinct vertex ids nearest (in the frontal projection) to the template, greedily in landmark order."""
    taken = np.zeros(len(x), dtype=bool)
    index = np.empty(NUM_LANDMARKS, dtype=np.int64)
    for k, (tx, ty) in enumerate(FACE_TEMPLATE_MM):
        distance = np.where(taken, np.inf, np.hypot(x - tx, y - ty))
        index[k] = int(np.argmin(distance))
        taken[index[k]] = True
    return index


def _expression_fields(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[N, 3, 64] expression displacement fields (mm per unit coefficient); see :func:`procedural_3dmm`."""
    zero = np.zeros_like(x)
    fields = np.zeros((len(x), 3, NUM_EXP))
    below, above = _logistic((MOUTH_LINE_MM - y) / LIP_SOFTNESS_MM), _logistic((y - MOUTH_LINE_MM) / LIP_SOFTNESS_MM)
    # 0 mouth open: the lower lip and the skin under it drop and recede, the upper lip lifts a little.
    lower = _bump(x, y, (0.0, -72.0), (42.0, 30.0)) * below
    upper = _bump(x, y, (0.0, -50.0), (32.0, 12.0)) * above
    fields[..., 0] = MOUTH_OPEN_MM * np.stack([zero, 0.25 * upper - lower, -0.3 * lower], 1)
    # 1 smile: the mouth corners move out, up and back; the cheeks rise.
    for side in (-1.0, 1.0):
        corner = _bump(x, y, (25.0 * side, MOUTH_LINE_MM + 1.0), (16.0, 14.0))
        cheek = _bump(x, y, (38.0 * side, -38.0), (20.0, 18.0))
        fields[..., 1] += SMILE_MM * (
            corner[:, None] * np.array([0.5 * side, 0.8, -0.3]) + 0.3 * cheek[:, None] * np.array([0.0, 1.0, 0.5])
        )
    # 2 eyes closed: the upper lids come down over the eyes, the lower lids rise slightly.
    for side in (-1.0, 1.0):
        upper_lid = _bump(x, y, (30.0 * side, 3.0), (30.0, 14.0)) * _logistic(y / LIP_SOFTNESS_MM)
        lower_lid = _bump(x, y, (30.0 * side, -3.0), (22.0, 8.0)) * _logistic(-y / LIP_SOFTNESS_MM)
        fields[:, 1, 2] += EYE_CLOSE_MM * (0.17 * lower_lid - upper_lid)
    # 3 brows raised: the brows and the forehead above them move up; nothing below the upper lids' line moves.
    envelope = 1.0 - _step(np.abs(x), 55.0, 72.0)
    lift = _step(y, BROW_LIFT_FROM_MM, BROW_LIFT_FULL_MM) * (1.0 - 0.6 * _step(y, 35.0, 60.0))
    fields[:, 1, 3] = BROW_RAISE_MM * envelope * lift
    # 4..63: small localized bumps with random centres, sizes and directions, decaying like PCA components.
    for k in range(len(EXPRESSION_MEANING), NUM_EXP):
        radius = rng.uniform(0.3, 0.8, size=2)
        centre = (
            rng.uniform(-0.6, 0.6) * PATCH_SEMI_AXES_MM[0],
            PATCH_CENTRE_Y_MM + rng.uniform(-0.6, 0.6) * PATCH_SEMI_AXES_MM[1],
        )
        direction = rng.normal(size=3)
        amplitude = BUMP_EXPRESSION_MM / (1.0 + (k - len(EXPRESSION_MEANING)) / 12.0)
        bump = _bump(x, y, centre, (radius[0] * 40.0, radius[1] * 40.0))
        fields[..., k] = amplitude * bump[:, None] * direction / np.linalg.norm(direction)
    return fields


def _identity_fields(x: np.ndarray, y: np.ndarray, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[N, 3, 80] identity displacement fields (mm per unit coefficient); see :func:`procedural_3dmm`."""
    zero = np.zeros_like(x)
    eyes = sum(np.sign(x) * _bump(x, y, (30.0 * side, 0.0), (25.0, 16.0)) for side in (-1.0, 1.0))
    cheeks = sum(_bump(x, y, (45.0 * side, -30.0), (25.0, 25.0)) for side in (-1.0, 1.0))
    nose = _nose_height(x, y) + sum(7.0 * _gauss(x, y, (13.0 * side, -35.0), (5.0, 5.0)) for side in (-1.0, 1.0))
    chin = _bump(x, y, (0.0, -88.0), (35.0, 25.0))
    leading = [
        (0.05 * x, zero, zero),  # face width
        (zero, 0.05 * (y - PATCH_CENTRE_Y_MM), zero),  # face length
        (zero, zero, 0.06 * z),  # face depth
        (zero, zero, 0.25 * nose),  # nose size
        (0.06 * x * _step(y, -40.0, -90.0), zero, zero),  # jaw width
        (3.0 * eyes, zero, zero),  # eye spacing
        (0.08 * x * _bump(x, y, (0.0, MOUTH_LINE_MM), (35.0, 18.0)), zero, zero),  # mouth width
        (zero, -2.0 * chin, 4.0 * chin),  # chin protrusion
        (zero, zero, -4.0 * _step(y, 20.0, 70.0) * np.clip((y - 20.0) / 50.0, 0.0, None)),  # forehead slope
        (zero, zero, 3.0 * cheeks),  # cheek fullness
    ]
    fields = np.zeros((len(x), 3, NUM_ID))
    for k, field in enumerate(leading):
        fields[..., k] = np.stack(field, 1)
    # 10..79: smooth mirror-symmetric global fields (x odd, y and z even in x, like the leading BFM components), three
    # low-frequency waves per axis, decaying like PCA components.
    for k in range(len(leading), NUM_ID):
        amplitude = BUMP_IDENTITY_MM / (1.0 + (k - len(leading)) / 5.0)
        for axis in range(3):
            freq, phase = rng.uniform(0.2, 1.5, size=(3, 2)), rng.uniform(0.0, 2 * np.pi, size=3)
            across = np.sin if axis == 0 else np.cos
            wave = across(2 * np.pi * freq[:, :1] * x / 200.0) * np.cos(
                2 * np.pi * freq[:, 1:] * y / 200.0 + phase[:, None]
            )
            fields[:, axis, k] = amplitude / np.sqrt(3.0) * wave.sum(0)
    return fields


def _texture(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Mean RGB [N, 3] (0..255: skin, lips, eyes, brows) and texture fields [N, 3, 80] (tints, then smooth fields)."""
    lips = np.clip(_gauss(x, y, (0.0, -52.0), (16.0, 4.0)) + _gauss(x, y, (0.0, -64.0), (15.0, 4.0)), 0.0, 1.0)
    eyes = sum(_bump(x, y, (30.0 * side, 0.0), (14.0, 4.5)) for side in (-1.0, 1.0))
    brows = sum(_bump(x, y, (32.0 * side, 19.0), (24.0, 4.0)) for side in (-1.0, 1.0))
    mean = np.array(SKIN_RGB) * np.ones((len(x), 1))
    for weight, colour in ((lips, LIP_RGB), (eyes, EYE_RGB), (brows, BROW_RGB)):
        mean = mean + weight[:, None] * (np.array(colour) - mean)
    fields = np.zeros((len(x), 3, NUM_TEX))
    for channel in range(3):
        fields[:, channel, channel] = 10.0  # red, green, blue tint
    fields[:, :, 3] = 15.0  # brightness
    for k in range(4, NUM_TEX):
        freq, phase = rng.uniform(-1.5, 1.5, size=2), rng.uniform(0.0, 2 * np.pi)
        wave = np.cos(2 * np.pi * (freq[0] * x + freq[1] * y) / 200.0 + phase)
        fields[..., k] = 5.0 / (1.0 + (k - 4) / 10.0) * wave[:, None] * rng.uniform(0.5, 1.0, size=3)
    return mean, fields


def procedural_3dmm(seed: int = 0, num_vertices: int = 3025, dtype: torch.dtype = torch.float32) -> Face3DMM:
    """A deterministic face-shaped 3DMM in BFM_model_front's layout, generated from scratch (no BFM data).

    The mesh is a square grid of about ``num_vertices`` vertices (an odd side, so the midline x = 0 is a vertex
    column) mapped onto an elliptical face patch (about 16 x 18 cm) with an ellipsoidal depth profile plus nose, eye
    sockets, brow ridges, lips, chin and cheekbones; decimetres and axes as BFM (x to the subject's left, y up, z out
    of the face), centroid at the origin. The 68 landmarks are the distinct vertices nearest to an average frontal
    68-point layout (:data:`FACE_TEMPLATE_MM`).

    Identity directions (per unit coefficient, smooth and global): 0 face width, 1 face length, 2 depth, 3 nose size,
    4 jaw width, 5 eye spacing, 6 mouth width, 7 chin protrusion, 8 forehead slope, 9 cheek fullness, 10-79 random
    mirror-symmetric low-frequency fields with decaying amplitude. Expression directions (localized, compact support):
    **0 opens the mouth** (lower lip drops 9 mm), **1 smiles** (mouth corners out and up), **2 closes the eyes**
    (at 1 the upper lids meet the lower ones), **3 raises the brows** (10 mm), 4-63 small random localized bumps with decaying amplitude
    (the synthetic data engine uses the same meaning, :data:`EXPRESSION_MEANING`). Texture: mean skin/lip/eye/brow
    colours (0..255), then RGB tints, brightness and smooth random fields.

    Args:
        seed: seeds the random fields (identity 10-79, expression 4-63, texture 4-79); the mean, the leading
            directions and the landmarks do not depend on it.
        num_vertices: target vertex count, rounded to an odd square grid (at least 25^2).
        dtype: floating dtype of the buffers.

    Example:
        >>> face = procedural_3dmm()
        >>> open_mouth = face.landmarks(None, torch.eye(64)[:1])  # coefficient 0 = 1: mouth open
    """
    side = 2 * round((float(np.sqrt(max(num_vertices, 1))) - 1.0) / 2.0) + 1  # odd: a vertex column on x = 0
    if side < PROCEDURAL_MIN_GRID:
        raise ValueError(f"num_vertices must be at least {PROCEDURAL_MIN_GRID**2}, got {num_vertices}")
    rng = np.random.default_rng(seed)
    x, y, triangles = _patch_grid(side)
    z = _mean_depth(x, y)
    landmarks = _snap_landmarks(x, y)
    mean = np.stack([x, y, z], 1)
    mean = mean - mean.mean(0)  # recentre like Deep3DFaceRecon's ParametricFaceModel
    exp_fields = _expression_fields(x, y, rng)
    id_fields = _identity_fields(x, y, z, rng)
    mean_tex, tex_fields = _texture(x, y, rng)
    mm = 1e-3 / BFM_UNIT_METRES  # model units per millimetre
    return Face3DMM(
        mean_shape=mm * mean.reshape(-1),
        id_base=mm * id_fields.reshape(-1, NUM_ID),
        exp_base=mm * exp_fields.reshape(-1, NUM_EXP),
        triangles=triangles,
        landmark_index=landmarks,
        mean_tex=mean_tex.reshape(-1),
        tex_base=tex_fields.reshape(-1, NUM_TEX),
        unit_metres=BFM_UNIT_METRES,
        dtype=dtype,
    )
