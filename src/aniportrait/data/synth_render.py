"""The renderer of synthetic figures: analytic ray casting of their scenes, shading, portraits and face crops.

:func:`render_figures` builds each batch's scene (:mod:`aniportrait.data.synth_scene`) and renders it from the
portrait camera and the face camera.

Cameras
    Portraits use the portrait camera's exact conventions (:mod:`aniportrait.cameras`): origin
    ``camera_origin(pitch, yaw)`` shifted by ``ORIGIN_OFFSET`` (as ``portrait_rays``), rotation
    ``look_at_rotation``, 12 degree fov, pixel centres at NDC +-1, row 0 at the top. Face crops use
    :func:`~aniportrait.cameras.face_camera` attached to the posed head, looking at the face centre from the
    portrait camera's direction (an aligned crop of the portrait's face, without head roll), with the constant
    ``FACE_CENTER_OFFSET`` that the generator's training face camera uses too (exact for the mean shape; a shaped
    head moves its face a little off the crop's centre, as the rig moves the generator's).

Rendering
    Analytic ray casting, vectorised over a batch of images in torch. The ray ``o + t (x e_x + y e_y + e_z)`` through
    pixel (x, y) meets ellipsoid k where ``|o' + t d'|^2 = 1`` in its unit-sphere frame; ``a = |d'|^2``,
    ``b = o'.d'`` and the discriminant ``b^2 - a (|o'|^2 - 1)`` are quadratics in (x, y) whose coefficients are
    computed per ellipsoid in float64. The discriminant's conic bounds the ellipsoid's silhouette, so each ellipsoid is
    tested only in the TILE x TILE pixel tiles its bounding box meets; per tile the quadratics are re-centred on the
    tile corner (float64, so no cancellation is left) and evaluated in float32 by one GEMM with the tile-local
    monomials. A deterministic scatter-min of (t bits, part id) keys picks the nearest hit. Shading works on the hit
    pixels only: ellipsoid normals, eyes, brows, mouth and the neckline painted in the head's (trunk's) local frame,
    Lambert shading with a fixed world light plus ambient, white background like the release's renders.
    ``SUPERSAMPLE`` x ``SUPERSAMPLE`` samples per pixel antialias the edges.

Determinism: plain float32 torch on the CPU in fixed batches, so a render is bitwise reproducible on a machine.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from aniportrait import cameras, constants
from aniportrait.data.synth_labels import NECKLINES, Figures
from aniportrait.data.synth_scene import (
    BROW,
    DECAL_MIN_Z,
    EYE,
    HAIRLINE_BACK,
    HAIRLINE_BACK_Z,
    HAIRLINE_FRONT,
    HAIRLINE_FRONT_Z,
    HAIRLINE_SIDE,
    JAW_DROP,
    LASH,
    MOUTH,
    NECKLINE_CREW,
    NECKLINE_V,
    PART,
    _build_scene,
    _Scene,
    _t,
)

__all__ = ["render_figures"]

# Shading: a fixed world light from the front, upper left of the figure's right, plus ambient.
LIGHT = (-0.35, 0.55, 1.0)
AMBIENT = 0.42
DIFFUSE = 0.62
SUPERSAMPLE = 2  # render at SUPERSAMPLE x resolution and average (antialiasing)
BATCH = 16  # images per render batch
BACKGROUND = 1.0  # white


# ---------------------------------------------------------------------------------------------------------------------
# Ray casting


TILE = 8  # ray casting works on TILE x TILE pixel tiles; each ellipsoid is tested only in tiles its silhouette meets
_KEY_PART_BITS = 8  # nearest-hit keys: float32 bits of t << 8 | part id (t > 0, so the bits sort like t)


def _smoothstep(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    t = ((x - lo) / (hi - lo)).clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _shift(coef: torch.Tensor, x0: torch.Tensor, y0: torch.Tensor) -> torch.Tensor:
    """Quadratics [..., 6] over (x^2, y^2, xy, x, y, 1) re-expressed in (s, r) = (x - x0, y - y0); x0, y0 [...]."""
    a, b, c, d, e, f = coef.unbind(-1)
    x0, y0 = x0.expand_as(a), y0.expand_as(a)
    return torch.stack(
        [
            a,
            b,
            c,
            2 * a * x0 + c * y0 + d,
            2 * b * y0 + c * x0 + e,
            a * x0 * x0 + b * y0 * y0 + c * x0 * y0 + d * x0 + e * y0 + f,
        ],
        dim=-1,
    )


def _conic_range(q: torch.Tensor, axis: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Extent along x (axis 0) or y (1) of the ellipse {q >= 0}; returns (lo, hi, bounded) [...] (float64)."""
    a, b, c, d, e, f = q.unbind(-1)
    if axis == 1:  # swap the roles of x and y
        a, b, d, e = b, a, e, d
    k2 = c * c - 4 * a * b
    k1 = 2 * c * e - 4 * b * d
    k0 = e * e - 4 * b * f
    bounded = (a < 0) & (b < 0) & (k2 < 0)
    disc = k1 * k1 - 4 * k2 * k0
    root = disc.clamp_min(0.0).sqrt()
    lo, hi = (-k1 + root) / (2 * k2), (-k1 - root) / (2 * k2)  # k2 < 0: this order gives lo <= hi
    empty = bounded & (disc < 0)
    return torch.where(empty, torch.inf, lo), torch.where(empty, -torch.inf, hi), bounded


def _cast(scene: _Scene, origin: torch.Tensor, rotation: torch.Tensor, fov_degrees: float, res: int):
    """Ray-cast the scene from cameras (origin [B, 3], camera-to-world rotation [B, 3, 3]) at res x res pixels.

    Returns the ray parameter t [B, P] of the nearest hit along ``origin + t (x e_x + y e_y + e_z)``, its part
    [B, P] (-1 = none) and the ray basis [B, 3 (e_x, e_y, e_z), 3].
    """
    n, parts = scene.present.shape
    focal = 1.0 / math.tan(math.radians(fov_degrees) / 2)
    f64 = torch.float64
    # Unnormalised ray directions: d(x, y) = x e_x + y e_y + e_z (camera_directions before normalisation).
    basis = torch.stack([rotation[:, :, 0], rotation[:, :, 1], -focal * rotation[:, :, 2]], dim=1)  # [B, 3, 3]
    inv = scene.inverse.to(f64)
    o = torch.einsum("bkij,bkj->bki", inv, (origin[:, None] - scene.centre).to(f64))  # ray origin, unit frame
    uvw = torch.einsum("bkij,bmj->bkmi", inv, basis.to(f64))  # [B, K, 3 (u, v, w), 3]: d' = x u + y v + w
    u, v, w = uvw.unbind(2)

    def dot(p, q):
        return (p * q).sum(-1)

    zero = torch.zeros_like(u[..., 0])
    ou, ov, ow, cc = dot(o, u), dot(o, v), dot(o, w), dot(o, o) - 1.0
    uu, vv, ww, uv, uw, vw = dot(u, u), dot(v, v), dot(w, w), dot(u, v), dot(u, w), dot(v, w)
    # Quadratics in (x, y) of the ray/unit-sphere equation a t^2 + 2 b t + c = 0: a, b and the discriminant b^2 - ac
    # (exact in float64; re-centred on each tile before the float32 evaluation, so no cancellation is left).
    coef = torch.stack(
        [
            torch.stack([uu, vv, 2 * uv, 2 * uw, 2 * vw, ww], -1),
            torch.stack([zero, zero, zero, ou, ov, ow], -1),
            torch.stack(
                [
                    ou * ou - cc * uu,
                    ov * ov - cc * vv,
                    2 * (ou * ov - cc * uv),
                    2 * (ou * ow - cc * uw),
                    2 * (ov * ow - cc * vw),
                    ow * ow - cc * ww,
                ],
                -1,
            ),
        ],
        dim=2,
    )  # [B, K, 3, 6]

    # Tiles each silhouette (the conic disc >= 0) can touch; unbounded conics (not expected) get every tile.
    tiles = -(-res // TILE)
    step = 2.0 / (res - 1) if res > 1 else 2.0
    margin = 1.0  # pixels
    x_lo, x_hi, x_ok = _conic_range(coef[:, :, 2], 0)
    y_lo, y_hi, y_ok = _conic_range(coef[:, :, 2], 1)
    col_lo = torch.where(x_ok, ((x_lo + 1) / step - margin).floor(), -1.0)
    col_hi = torch.where(x_ok, ((x_hi + 1) / step + margin).ceil(), tiles * TILE)
    row_lo = torch.where(y_ok, ((1 - y_hi) / step - margin).floor(), -1.0)
    row_hi = torch.where(y_ok, ((1 - y_lo) / step + margin).ceil(), tiles * TILE)
    tile_start = torch.arange(tiles, dtype=f64) * TILE
    cols = (tile_start + TILE - 1 >= col_lo[..., None]) & (tile_start <= col_hi[..., None])  # [B, K, tiles]
    rows = (tile_start + TILE - 1 >= row_lo[..., None]) & (tile_start <= row_hi[..., None])
    live = rows[..., :, None] & cols[..., None, :] & scene.present[:, :, None, None]
    bi, ki, ty, tx = live.nonzero(as_tuple=True)  # candidates (image, part, tile row, tile column)

    # Evaluate a, b, disc on every pixel of each candidate tile: one GEMM with the tile-local monomials.
    x0 = -1.0 + (tx * TILE).to(f64) * step
    y0 = 1.0 - (ty * TILE).to(f64) * step
    local = _shift(_take(coef.reshape(n * parts, 3, 6), bi * parts + ki), x0[:, None], y0[:, None])
    local = local.to(torch.float32)  # [M, 3, 6]
    j = torch.arange(TILE, dtype=torch.float32)
    sr, ss_ = torch.meshgrid(-j * step, j * step, indexing="ij")  # row offsets (y decreases), column offsets
    s_, r_ = ss_.reshape(-1), sr.reshape(-1)
    mono = torch.stack([s_ * s_, r_ * r_, s_ * r_, s_, r_, torch.ones_like(s_)])  # [6, TILE^2]
    poly = (local.reshape(-1, 6) @ mono).view(len(bi), 3, TILE * TILE)
    a, b, disc = poly.unbind(1)
    root = disc.clamp_min(0.0).sqrt()
    t_near = (-b - root) / a
    t = torch.where((disc > 0) & (t_near > 0), t_near, torch.inf)
    # The hair cap is clipped at the hairline: a clipped near hit falls through to the far side of the cap.
    cap = (ki == PART["hair"]).nonzero(as_tuple=True)[0]
    if len(cap):
        cb, ck = bi[cap], ki[cap]
        lin = uvw[cb, ck]  # [Mc, 3 (u, v, w), 3]
        d0 = (lin[:, 0] * x0[cap, None] + lin[:, 1] * y0[cap, None] + lin[:, 2]).to(torch.float32)
        d_cap = d0[:, :, None] + lin[:, 0, :, None].float() * s_ + lin[:, 1, :, None].float() * r_  # [Mc, 3, T^2]
        oc = o[cb, ck].to(torch.float32)[:, :, None]
        t_far = (-b[cap] + root[cap]) / a[cap]
        keep = []
        for tk in (t_near[cap], t_far):
            point = oc + tk[:, None] * d_cap
            line = (
                HAIRLINE_SIDE
                + HAIRLINE_FRONT * _smoothstep(point[:, 2], *HAIRLINE_FRONT_Z)
                + HAIRLINE_BACK * _smoothstep(-point[:, 2], *HAIRLINE_BACK_Z)
            )
            keep.append(point[:, 1] > line)
        ok = disc[cap] > 0
        t[cap] = torch.where(
            ok & keep[0] & (t_near[cap] > 0), t_near[cap], torch.where(ok & keep[1] & (t_far > 0), t_far, torch.inf)
        )

    # Nearest hit per pixel: scatter-min of (t bits << 8 | part) over the candidates (deterministic).
    side = tiles * TILE
    none = torch.iinfo(torch.int64).max
    key = (t.view(torch.int32).to(torch.int64) << _KEY_PART_BITS) | ki[:, None]
    key = torch.where(torch.isfinite(t), key, none)
    offsets = (torch.arange(TILE)[:, None] * side + torch.arange(TILE)[None, :]).reshape(-1)
    base = bi * side * side + ty * TILE * side + tx * TILE
    best = torch.full((n * side * side,), none, dtype=torch.int64)
    best.scatter_reduce_(0, (base[:, None] + offsets).reshape(-1), key.reshape(-1), "amin")
    best = best.view(n, side, side)[:, :res, :res].reshape(n, -1)
    found = best != none
    part = torch.where(found, best & ((1 << _KEY_PART_BITS) - 1), PART["background"])
    t_min = torch.where(found, best >> _KEY_PART_BITS, 0).to(torch.int32).view(torch.float32)
    return t_min, part, basis


def _take(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows ``index`` [M] of ``table`` [N, ...] (index_select, much faster than advanced indexing on the CPU)."""
    return table.reshape(len(table), -1).index_select(0, index).view((len(index),) + table.shape[1:])


def _shade(scene: _Scene, origin: torch.Tensor, t: torch.Tensor, part: torch.Tensor, basis: torch.Tensor, res: int):
    """Albedo with decals, Lambert shading and the white background: rgb [B, P, 3] in [0, 1], labels [B, P].

    Works on the compacted hit pixels only.
    """
    n, per_image = part.shape
    parts = scene.present.shape[1]
    hit = (part >= 0).reshape(-1).nonzero(as_tuple=True)[0]
    b, k = hit // per_image, part.reshape(-1).index_select(0, hit)
    ndc = torch.linspace(-1.0, 1.0, res)
    pixel = hit % per_image
    x, y = ndc.index_select(0, pixel % res), -ndc.index_select(0, pixel // res)
    camera = _take(torch.cat([origin, basis.reshape(n, 9)], dim=1), b)  # [M, 12]
    dirs = x[:, None] * camera[:, 3:6] + y[:, None] * camera[:, 6:9] + camera[:, 9:12]
    point = camera[:, :3] + t.reshape(-1).index_select(0, hit)[:, None] * dirs
    # Ellipsoid normal: the gradient of |L^-1 (p - c)|^2, i.e. (L^-T L^-1) (p - c).
    gram = scene.inverse.transpose(-1, -2) @ scene.inverse
    table = torch.cat([scene.centre, gram.reshape(n, parts, 9), scene.albedo], dim=-1).reshape(n * parts, 15)
    prim = _take(table, b * parts + k)
    rel = point - prim[:, :3]
    normal = torch.nn.functional.normalize((prim[:, 3:12].view(-1, 3, 3) * rel[:, None, :]).sum(-1), dim=-1)
    normal = torch.where((normal * dirs).sum(-1, keepdim=True) > 0, -normal, normal)  # inside of the hair cap
    albedo, label = _decals(scene, point, b, k, prim[:, 12:15].contiguous())
    light = torch.nn.functional.normalize(_t(LIGHT, normal), dim=0)
    shade = AMBIENT + DIFFUSE * (normal @ light).clamp_min(0.0)
    rgb = torch.full((n * per_image, 3), BACKGROUND)
    rgb.index_copy_(0, hit, (albedo * shade[:, None]).clamp(0.0, 1.0))
    labels = torch.full((n * per_image,), PART["background"], dtype=torch.int64)
    labels.index_copy_(0, hit, label)
    return rgb.view(n, per_image, 3), labels.view(n, per_image)


def _decals(scene: _Scene, point: torch.Tensor, image: torch.Tensor, part: torch.Tensor, albedo: torch.Tensor):
    """Paint eyes, brows, mouth (head frame) and the neckline (trunk frame) on hit samples.

    Args: hit points [M, 3], their image index [M] and part [M], albedo [M, 3]. Returns (albedo, label) [M, 3], [M].
    Works on the compacted samples of the face (skull and jaw, front half) and of the shirt only.
    """
    feat = scene.features
    label = part.clone()

    def painter(index):
        colour, code = albedo.index_select(0, index), label.index_select(0, index)

        def paint(mask, value, new_code):
            nonlocal colour, code
            value = value if isinstance(value, torch.Tensor) else _t(value, colour).expand_as(colour)
            colour = torch.where(mask[:, None], value, colour)
            code = torch.where(mask, new_code, code)

        def commit():
            albedo.index_copy_(0, index, colour)
            label.index_copy_(0, index, code)

        return paint, commit

    # Face: the point in the head's nominal frame (undo the pose, the placement at J15 and the head's shape map).
    index = ((label == PART["skull"]) | (label == PART["jaw"])).nonzero(as_tuple=True)[0]
    n = len(scene.head_position)
    per_image = torch.cat(
        [
            scene.head_rotation.reshape(n, 9),
            scene.head_position,
            torch.linalg.inv(scene.head_linear).reshape(n, 9),
            scene.head_offset,  # 0:9, 9:12, 12:21, 21:24
            feat["hair"] * 0.6,
            feat["iris"],
            feat["lips"],  # 24:27 brow colour, 27:30, 30:33
            torch.stack([feat["brow"], feat["eye_open"], feat["smile"], feat["mouth_open"]], dim=1),  # 33:37
        ],
        dim=1,
    )
    row = _take(per_image, image.index_select(0, index))
    rel = point.index_select(0, index) - row[:, 9:12]
    rel = (row[:, :9].view(-1, 3, 3) * rel[:, :, None]).sum(1) - row[:, 21:24]  # R^T (p - J15') - offset
    nominal = (row[:, 12:21].view(-1, 3, 3) @ rel[:, :, None])[..., 0]
    front = (nominal[:, 2] > DECAL_MIN_Z).nonzero(as_tuple=True)[0]
    index, row, nominal = index.index_select(0, front), row.index_select(0, front), nominal.index_select(0, front)
    hx, hy = nominal[:, 0], nominal[:, 1]
    ax = hx.abs()  # eyes and brows are mirror-symmetric
    brow, open_, smile, mouth_open = row[:, 33:37].unbind(1)
    paint, commit = painter(index)
    # Brows: arched bands above the eyes, raised by e[3].
    (bx, by), b_half, b_thick, b_arch, b_raise = BROW
    s = (ax - bx) / b_half
    brow_y = by + b_raise * brow + b_arch * (1 - s * s)
    paint((s.abs() < 1) & ((hy - brow_y).abs() < b_thick * (1 - 0.5 * s * s)), row[:, 24:27], PART["brow"])
    # Eyes: almond whites with iris and pupil; with e[2] the upper lid comes down onto the lower one (a lash line).
    (ex, ey), (erx, ery), iris_r, pupil_r = EYE
    dx, dy = (ax - ex) / erx, hy - ey
    half = ery * (1 - dx * dx).clamp_min(0.0)  # the open eye's half height
    upper = -half + 2 * half * open_  # the upper lid's edge; the lower one stays at -half
    eye = (dx.abs() < 1) & (dy > -half) & (dy < upper)
    r2 = (ax - ex) ** 2 + dy**2
    paint(eye, (0.95, 0.95, 0.93), PART["eye"])
    paint(eye & (r2 < iris_r**2), row[:, 27:30], PART["eye"])
    paint(eye & (r2 < pupil_r**2), (0.03, 0.03, 0.03), PART["eye"])
    lash_half = LASH * (1 - 0.5 * dx * dx)
    lash = (dx.abs() < 1) & (((dy - upper).abs() < lash_half) | ((dy + half).abs() < lash_half)) & (open_ < 1.2)
    paint(lash, (0.12, 0.08, 0.07), PART["eye"])
    # Mouth: lips around a dark opening; corners lift with a smile, the mouth widens.
    (mx, my), m_half, lip, lip_open, cavity, lift, widen = MOUTH
    width = m_half * (1 + widen * smile)
    s = (hx - mx) / width
    centre_y = my - 0.5 * JAW_DROP * mouth_open + lift * smile * s * s
    envelope = (1 - s * s).clamp_min(0.0).sqrt()
    dy = (hy - centre_y).abs()
    inside = s.abs() < 1
    lips = row[:, 30:33]
    paint(inside & (dy < (lip + lip_open * mouth_open) * envelope + 0.0012), lips, PART["mouth"])
    paint(inside & (dy < cavity * mouth_open * envelope), (0.22, 0.05, 0.06), PART["mouth"])
    paint(inside & (dy < 0.0009) & (mouth_open < 0.15), lips * 0.55, PART["mouth"])
    commit()

    # Neckline: skin on the shirt below the neck (trunk frame = world frame, static).
    shirt = torch.zeros_like(label, dtype=torch.bool)
    for name in ("torso", "chest", "trapezius_l", "trapezius_r"):
        shirt |= label == PART[name]
    index = shirt.nonzero(as_tuple=True)[0]
    per_image = torch.cat(
        [scene.neck_joint, feat["skin"] * 0.97, (feat["neckline"] == NECKLINES.index("v")).to(point.dtype)[:, None]],
        dim=1,
    )
    row = _take(per_image, image.index_select(0, index))
    nx, ny, nz = (point.index_select(0, index) - row[:, :3]).unbind(-1)
    crew_w, crew_d, crew_c = NECKLINE_CREW
    sx = (nx / crew_w).clamp(-1, 1)
    crew = (nx.abs() < crew_w) & (ny > -crew_d - crew_c * (1 - sx * sx))
    v_w, v_d, v_slope = NECKLINE_V
    vee = (nx.abs() < v_w) & (ny > -v_d + v_slope * nx.abs())
    paint, commit = painter(index)
    paint((nz > -0.02) & torch.where(row[:, 6] > 0.5, vee, crew), row[:, 3:6], PART["neckline"])
    commit()
    return albedo, label


def _portrait_camera(camera: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Ray origin (shifted by ORIGIN_OFFSET, as portrait_rays) and camera-to-world rotation of portrait cameras."""
    origin = cameras.camera_origin(camera)
    return origin + _t(constants.ORIGIN_OFFSET, origin), cameras.look_at_rotation(origin)


def _render_view(scene, origin, rotation, fov, res, supersample, want_parts):
    rgb, label = _shade(scene, origin, *_cast(scene, origin, rotation, fov, res * supersample), res * supersample)
    n = len(rgb)
    rgb = rgb.view(n, res * supersample, res * supersample, 3)
    if supersample > 1:
        rgb = torch.nn.functional.avg_pool2d(rgb.permute(0, 3, 1, 2), supersample).permute(0, 2, 3, 1)
    image = np.ascontiguousarray((rgb * 255.0 + 0.5).clamp(0, 255).to(torch.uint8).numpy())
    if not want_parts:
        return image, None
    # The part map at the centre sample of each output pixel's supersample block.
    label = label.view(n, res * supersample, res * supersample)[
        :, supersample // 2 :: supersample, supersample // 2 :: supersample
    ]
    return image, label.numpy().astype(np.int16)


def render_figures(
    fig: Figures,
    res: int = 128,
    face_res: int | None = None,
    *,
    supersample: int = SUPERSAMPLE,
    return_parts: bool = False,
    face_view: str = "portrait",
):
    """Render portraits and face crops of figures.

    Args:
        fig: the figures (labels and appearance).
        res: portrait side; face_res: face crop side (default res // 2).
        supersample: samples per pixel side (antialiasing).
        return_parts: also return part maps (int16 ids of :data:`PART`, -1 = background).
        face_view: ``"portrait"``: the face camera looks from the portrait camera's direction (the dataset's crops);
            ``"frontal"``: straight at the face.

    Returns:
        portraits [N, R, R, 3] and faces [N, F, F, 3] uint8, plus their part maps [N, R, R] / [N, F, F] with
        ``return_parts``.
    """
    face_res = res // 2 if face_res is None else face_res
    out = [[], [], [], []]
    for start in range(0, len(fig), BATCH):
        part = fig[np.arange(start, min(start + BATCH, len(fig)))]
        with torch.no_grad():
            scene = _build_scene(part)
            origin, rotation = _portrait_camera(torch.from_numpy(part.camera).float())
            image, image_parts = _render_view(
                scene, origin, rotation, constants.FOV_DEGREES, res, supersample, return_parts
            )
            head = (scene.head_rotation, scene.head_position)
            view_origin = origin if face_view == "portrait" else None
            f_origin, f_rotation = cameras.face_camera(head, view_origin)
            face, face_parts = _render_view(
                scene, f_origin, f_rotation, cameras.FACE_CAMERA_FOV_DEGREES, face_res, supersample, return_parts
            )
        for store, value in zip(out, (image, face, image_parts, face_parts)):
            store.append(value)
    images, faces = np.concatenate(out[0]), np.concatenate(out[1])
    if return_parts:
        return images, faces, np.concatenate(out[2]), np.concatenate(out[3])
    return images, faces
