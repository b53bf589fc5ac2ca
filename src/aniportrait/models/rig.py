"""The procedural rig: a synthetic head-and-shoulders body in SMPL's array layout, with no SMPL data.

:func:`procedural_rig` builds a stand-in with SMPL's 6,890 vertices, 13,776 triangles and 24 joints (template,
shape and pose directions, skinning weights, joint regressor), so the whole pipeline runs and trains without the
real model; :func:`rig_valid_index` picks its vertices for the nearest-vertex lookup.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from aniportrait.constants import SMPL_NUM_VERTS, SMPL_PARENTS
from aniportrait.models.smpl_file import (
    HEAD_JOINT,
    LEFT_ARM_JOINTS,
    LEG_JOINTS,
    LOWER_ARM_JOINTS,
    NECK_JOINT,
    NUM_JOINTS,
    NUM_POSE_BASIS,
    RIGHT_ARM_JOINTS,
    SPINE_JOINTS,
)

__all__ = ["RIG_BETA_SCALES", "procedural_rig", "rig_valid_index"]

# Procedural rig: a synthetic head-and-shoulders body in SMPL's array layout (no SMPL data)
#
# The mesh is a UV sphere (a top pole, RIG_RINGS rings of RIG_SEGMENTS vertices, a bottom pole: 6890 vertices,
# 13776 triangles) whose rings are horizontal slices of a smooth implicit body (union of ellipsoids and capsules, in
# the rest T-pose like SMPL). Each slice is star-shaped about a vertical axis, so a ring vertex is where the ray from
# the axis at the ring's height leaves the body.

RIG_RINGS = 84
RIG_SEGMENTS = 82
RIG_BLEND = 0.02  # smooth-union radius of the implicit body (m): fillets at neck, shoulders, armpits
RIG_HEAD_RING_DENSITY = 1.6  # rings per unit profile length on the head, relative to the body
RIG_RAY_MAX = 0.5  # slice rays start here (m), outside the body
RIG_TRACE_SAFETY = 0.8  # sphere-tracing steps are this fraction of the distance bound
RIG_TRACE_MIN_STEP = 1e-3  # (m) features thinner than this along a ray may be stepped over
RIG_BISECTIONS = 24
RIG_PROFILE_HEIGHTS = 600  # heights sampled to measure the body's profile for the ring spacing
RIG_PROFILE_ANGLES = 16  # directions averaged per profile height
RIG_ANGLE_SAMPLES = 4096  # resolution of the angular vertex-density integral
RIG_JITTER = 0.04  # relative size jitter of head, shoulders and torso for seed != 0

# Skinning-weight transitions (m): every blend between two joints is a smooth step over about 2 * RIG_BLEND_BAND.
RIG_BLEND_BAND = 0.015
RIG_JAW_TILT = 0.3  # the head/neck boundary rises by this much per metre towards the back
RIG_JAW_BELOW = 0.005  # the head weight reaches 1 this far below the head joint (on the jaw-line plane)
RIG_NECK_HALF_WIDTH = 0.05  # neck weight fades out beyond this |x|

# Joint regressor rows spread over the vertices within the first of these radii (m) that surrounds the joint.
RIG_REGRESSOR_RADII = (0.03, 0.045, 0.06, 0.08, 0.1, 0.13, 0.16, 0.2, 0.25, 0.3)
RIG_REGRESSOR_MIN_VERTS = 12
RIG_REGRESSOR_TOL = 1e-12  # (m) residual of the regressed joint position
RIG_NEWTON_STEPS = 60
RIG_MIN_LINE_STEP = 1e-8  # the Newton line search gives up below this step fraction
RIG_ARMIJO = 0.25  # sufficient-decrease fraction of the line search
# The valid (lookup) vertices: at most this far below the neck joint and beyond the shoulder joints (m).
RIG_VALID_DROP = 0.16
RIG_VALID_REACH = 0.09

# Shape directions (metres per unit beta) applied to unit fields: size (relative to the pelvis), shoulder width, head
# size (relative to the head centre), neck length, chest depth, waist width, face length (and narrowness), neck
# thickness, upper-arm thickness, shoulder height.
RIG_BETA_SCALES = (0.03, 0.015, 0.05, 0.015, 0.12, 0.12, 0.08, 0.15, 0.12, 0.012)
RIG_FACE_NARROWING = 0.5  # x shrinks by this fraction of the face-length stretch

# Extra vertex density around the arms (+-x) and the face (+z) on every ring: (centre angle, width, gain).
RIG_ANGLE_DENSITY = ((0.0, 0.35, 1.2), (np.pi, 0.35, 1.2), (np.pi / 2, 0.6, 0.8))


@dataclass(frozen=True)
class _Anatomy:
    """Nominal rest-pose anatomy of the rig in SMPL metres (y up, z forward, x to the figure's left).

    The face centre, J12 + SMPL_SCALE * (0, FACE_TY, FACE_TZ) = (0, 0.421, 0.083), lies at eye height 7.5 cm in front
    of the head centre and 2.3 cm behind the face surface.
    """

    head_centre: tuple[float, float, float] = (0.0, 0.425, 0.008)
    head_radii: tuple[float, float, float] = (0.078, 0.112, 0.098)
    nose_centre: tuple[float, float, float] = (0.0, 0.400, 0.098)
    nose_radii: tuple[float, float, float] = (0.014, 0.024, 0.030)
    neck_bottom: tuple[float, float, float] = (0.0, 0.200, -0.020)
    neck_top: tuple[float, float, float] = (0.0, 0.370, -0.006)
    neck_radius: float = 0.056
    chest_centre: tuple[float, float, float] = (0.0, 0.100, -0.022)
    chest_radii: tuple[float, float, float] = (0.170, 0.170, 0.100)
    belly_centre: tuple[float, float, float] = (0.0, -0.020, -0.018)
    belly_radii: tuple[float, float, float] = (0.140, 0.160, 0.092)
    # Trapezius: from the neck base out to the shoulder, and the upper-arm stub (T-pose, along +-x).
    trapezius_inner: tuple[float, float, float] = (0.030, 0.250, -0.026)
    trapezius_outer: tuple[float, float, float] = (0.165, 0.212, -0.026)
    trapezius_radius: float = 0.048
    arm_inner: tuple[float, float, float] = (0.140, 0.205, -0.026)
    arm_outer: tuple[float, float, float] = (0.320, 0.205, -0.026)
    arm_radius: float = 0.050
    # The axis of the slice rays: under the neck it follows the body, above it the head centre.
    axis_body_z: float = -0.022
    axis_blend_y: tuple[float, float] = (0.30, 0.37)
    # Joint positions [24, 3]. J12 sits (0, 0.1506, 0.1129) m below-behind the face centre, as in the release's frame;
    # forearm and leg joints are folded into the arm stubs and the pelvis, as the rig has no forearms or legs.
    joints: tuple[tuple[float, float, float], ...] = (
        (0.000, -0.120, -0.015),  # 0 pelvis
        (0.070, -0.100, -0.015),  # 1 left hip
        (-0.070, -0.100, -0.015),  # 2 right hip
        (0.000, -0.030, -0.025),  # 3 spine1
        (0.070, -0.115, -0.012),  # 4 left knee
        (-0.070, -0.115, -0.012),  # 5 right knee
        (0.000, 0.060, -0.028),  # 6 spine2
        (0.070, -0.125, -0.010),  # 7 left ankle
        (-0.070, -0.125, -0.010),  # 8 right ankle
        (0.000, 0.130, -0.028),  # 9 spine3
        (0.070, -0.125, 0.010),  # 10 left foot
        (-0.070, -0.125, 0.010),  # 11 right foot
        (0.000, 0.270, -0.030),  # 12 neck
        (0.070, 0.235, -0.030),  # 13 left collar
        (-0.070, 0.235, -0.030),  # 14 right collar
        (0.000, 0.350, -0.008),  # 15 head
        (0.175, 0.205, -0.026),  # 16 left shoulder
        (-0.175, 0.205, -0.026),  # 17 right shoulder
        (0.300, 0.205, -0.026),  # 18 left elbow
        (-0.300, 0.205, -0.026),  # 19 right elbow
        (0.325, 0.205, -0.026),  # 20 left wrist
        (-0.325, 0.205, -0.026),  # 21 right wrist
        (0.340, 0.205, -0.026),  # 22 left hand
        (-0.340, 0.205, -0.026),  # 23 right hand
    )

    def jittered(self, seed: int) -> _Anatomy:
        """Seed 0: the nominal figure; other seeds scale head, shoulder width and torso width by up to RIG_JITTER."""
        if seed == 0:
            return self
        head, shoulders, torso = 1.0 + RIG_JITTER * np.random.default_rng(seed).uniform(-1.0, 1.0, size=3)
        centre = np.array(self.head_centre)

        def about_head(p):  # scale a point about the head centre
            return tuple(centre + head * (np.array(p) - centre))

        def wide(p, factor=shoulders):  # move a point outwards in x
            return (p[0] * factor, p[1], p[2])

        joints = [tuple(j) for j in self.joints]
        for j in LEFT_ARM_JOINTS + RIGHT_ARM_JOINTS + LOWER_ARM_JOINTS:
            joints[j] = wide(joints[j])
        for j in LEG_JOINTS:
            joints[j] = wide(joints[j], torso)
        return replace(
            self,
            head_radii=tuple(head * r for r in self.head_radii),
            nose_centre=about_head(self.nose_centre),
            nose_radii=tuple(head * r for r in self.nose_radii),
            chest_radii=(torso * self.chest_radii[0],) + self.chest_radii[1:],
            belly_radii=(torso * self.belly_radii[0],) + self.belly_radii[1:],
            trapezius_outer=wide(self.trapezius_outer),
            arm_inner=wide(self.arm_inner),
            arm_outer=wide(self.arm_outer),
            joints=tuple(joints),
        )


def _smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _ellipsoid_sdf(p: np.ndarray, centre, radii) -> np.ndarray:
    # Distance bound k0 (k0 - 1) / k1 with k0 = |q / r|, k1 = |q / r^2| (exact on the surface, smooth near it).
    q = p - np.asarray(centre)
    k0 = np.linalg.norm(q / np.asarray(radii), axis=-1)
    k1 = np.linalg.norm(q / np.square(radii), axis=-1)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-12)


def _capsule_sdf(p: np.ndarray, a, b, radius: float) -> np.ndarray:
    a, b = np.asarray(a), np.asarray(b)
    t = np.clip(((p - a) @ (b - a)) / np.dot(b - a, b - a), 0.0, 1.0)
    return np.linalg.norm(p - a - t[..., None] * (b - a), axis=-1) - radius


def _smooth_union(d1: np.ndarray, d2: np.ndarray, k: float) -> np.ndarray:
    # Polynomial smooth minimum: equals min(d1, d2) when they differ by more than k.
    h = np.maximum(k - np.abs(d1 - d2), 0.0) / k
    return np.minimum(d1, d2) - h * h * k / 4.0


def _body_sdf(p: np.ndarray, anatomy: _Anatomy) -> np.ndarray:
    """Signed distance bound [...] of the rig's implicit body at points p [..., 3] (negative inside)."""
    a = anatomy
    mirror = np.array([-1.0, 1.0, 1.0])
    parts = [
        _ellipsoid_sdf(p, a.head_centre, a.head_radii),
        _ellipsoid_sdf(p, a.nose_centre, a.nose_radii),
        _capsule_sdf(p, a.neck_bottom, a.neck_top, a.neck_radius),
        _ellipsoid_sdf(p, a.chest_centre, a.chest_radii),
        _ellipsoid_sdf(p, a.belly_centre, a.belly_radii),
    ]
    for side in (np.ones(3), mirror):
        parts.append(_capsule_sdf(p, side * a.trapezius_inner, side * a.trapezius_outer, a.trapezius_radius))
        parts.append(_capsule_sdf(p, side * a.arm_inner, side * a.arm_outer, a.arm_radius))
    sdf = parts[0]
    for part in parts[1:]:
        sdf = _smooth_union(sdf, part, RIG_BLEND)
    return sdf


def _axis_z(y: np.ndarray, anatomy: _Anatomy) -> np.ndarray:
    """z of the vertical ray axis at heights y: the body axis below the neck, the head centre above."""
    blend = _smoothstep(y, *anatomy.axis_blend_y)
    return (1.0 - blend) * anatomy.axis_body_z + blend * anatomy.head_centre[2]


def _slice_radii(y: np.ndarray, angles: np.ndarray, anatomy: _Anatomy) -> np.ndarray:
    """[R, S] distance from the axis at heights y [R] along directions (cos a, 0, sin a) [S] to the body surface.

    Rays are sphere-traced inwards from RIG_RAY_MAX, so the hit is the farthest surface crossing (a slice that is not
    quite star-shaped gets its outer hull), then refined by bisection.
    """
    direction = np.stack([np.cos(angles), np.zeros_like(angles), np.sin(angles)], axis=-1)  # [S, 3]
    origin = np.stack([np.zeros_like(y), y, _axis_z(y, anatomy)], axis=-1)  # [R, 3]
    origin, direction = np.broadcast_arrays(origin[:, None], direction[None])
    origin, direction = origin.reshape(-1, 3), direction.reshape(-1, 3)

    def sdf_at(t, rows=slice(None)):  # sdf at origin + t * direction for the rays ``rows``
        return _body_sdf(origin[rows] + t[:, None] * direction[rows], anatomy)

    if (sdf_at(np.zeros(len(origin))) >= 0.0).any() or (sdf_at(np.full(len(origin), RIG_RAY_MAX)) < 0.0).any():
        raise RuntimeError("procedural rig: a slice axis lies outside the body, or the body is wider than RIG_RAY_MAX")
    t = np.full(len(origin), RIG_RAY_MAX)  # current trace position
    outside = t.copy()  # last position known to be outside
    active = np.arange(len(origin))
    while active.size:
        dist = sdf_at(t[active], active)
        active = active[dist >= 0.0]  # rays whose current point is inside are done
        dist = dist[dist >= 0.0]
        outside[active] = t[active]
        t[active] = np.maximum(t[active] - np.maximum(RIG_TRACE_SAFETY * dist, RIG_TRACE_MIN_STEP), 0.0)
    lo, hi = t, outside
    for _ in range(RIG_BISECTIONS):
        mid = 0.5 * (lo + hi)
        is_inside = sdf_at(mid) < 0.0
        lo, hi = np.where(is_inside, mid, lo), np.where(is_inside, hi, mid)
    return (0.5 * (lo + hi)).reshape(len(y), len(angles))


def _ring_angles() -> np.ndarray:
    """[RIG_SEGMENTS] ray angles from the back (-z) through +x, front, -x; denser at the arms and the face.

    The density is mirror-symmetric (angle a <-> pi - a), so vertex k and vertex RIG_SEGMENTS - k are mirror images.
    """
    fine = np.linspace(-np.pi / 2, 3 * np.pi / 2, RIG_ANGLE_SAMPLES + 1)
    density = np.ones_like(fine)
    for centre, width, gain in RIG_ANGLE_DENSITY:
        gap = np.angle(np.exp(1j * (fine - centre)))  # wrapped angle difference
        density += gain * np.exp(-0.5 * (gap / width) ** 2)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(fine))])
    return np.interp(np.arange(RIG_SEGMENTS) / RIG_SEGMENTS * cdf[-1], cdf, fine)


def _pole_height(anatomy: _Anatomy, start: float, stop: float) -> float:
    """Height where the ray axis leaves the body, searched from an inside height ``start`` towards ``stop``."""
    lo, hi = start, stop
    for _ in range(RIG_BISECTIONS):
        mid = 0.5 * (lo + hi)
        point = np.array([[0.0, mid, float(_axis_z(np.array(mid), anatomy))]])
        lo, hi = (mid, hi) if _body_sdf(point, anatomy)[0] < 0.0 else (lo, mid)
    return 0.5 * (lo + hi)


def _ring_heights(anatomy: _Anatomy, top: float, bottom: float) -> np.ndarray:
    """[RIG_RINGS] ring heights, top to bottom, evenly spaced along the body's profile (denser on the head)."""
    fine = np.linspace(top, bottom, RIG_PROFILE_HEIGHTS + 1)[1:-1]
    angles = np.linspace(0.0, 2 * np.pi, RIG_PROFILE_ANGLES, endpoint=False)
    radius = _slice_radii(fine, angles, anatomy).mean(axis=1)
    y = np.concatenate([[top], fine, [bottom]])
    r = np.concatenate([[0.0], radius, [0.0]])
    chin = anatomy.head_centre[1] - anatomy.head_radii[1]
    density = np.where(y[1:] > chin, RIG_HEAD_RING_DENSITY, 1.0)
    length = np.concatenate([[0.0], np.cumsum(density * np.hypot(np.diff(y), np.diff(r)))])
    targets = np.arange(1, RIG_RINGS + 1) / (RIG_RINGS + 1) * length[-1]
    return np.interp(targets, length, y)


def _sphere_faces() -> np.ndarray:
    """[13776, 3] int64 triangles of the UV sphere: top fan, ring strips, bottom fan."""
    seg = np.arange(RIG_SEGMENTS)
    nxt = (seg + 1) % RIG_SEGMENTS
    bottom = 1 + RIG_RINGS * RIG_SEGMENTS
    faces = [np.stack([np.zeros_like(seg), 1 + nxt, 1 + seg], axis=1)]
    for ring in range(RIG_RINGS - 1):
        a, b = 1 + ring * RIG_SEGMENTS + seg, 1 + ring * RIG_SEGMENTS + nxt
        faces += [np.stack([a, b, a + RIG_SEGMENTS], axis=1), np.stack([b, b + RIG_SEGMENTS, a + RIG_SEGMENTS], axis=1)]
    last = 1 + (RIG_RINGS - 1) * RIG_SEGMENTS
    faces.append(np.stack([last + seg, last + nxt, np.full_like(seg, bottom)], axis=1))
    return np.concatenate(faces).astype(np.int64)


def _rig_vertices(anatomy: _Anatomy) -> np.ndarray:
    """[6890, 3] rest-pose vertices: top pole, RIG_RINGS rings of RIG_SEGMENTS (top to bottom), bottom pole."""
    top = _pole_height(anatomy, anatomy.head_centre[1], anatomy.head_centre[1] + RIG_RAY_MAX)
    bottom = _pole_height(anatomy, anatomy.belly_centre[1], anatomy.belly_centre[1] - RIG_RAY_MAX)
    heights = _ring_heights(anatomy, top, bottom)
    angles = _ring_angles()
    radii = _slice_radii(heights, angles, anatomy)  # [RIG_RINGS, RIG_SEGMENTS]
    axis = _axis_z(heights, anatomy)[:, None]
    rings = np.stack(
        [radii * np.cos(angles), np.broadcast_to(heights[:, None], radii.shape), axis + radii * np.sin(angles)], axis=-1
    )
    poles = [[0.0, h, float(_axis_z(np.array(h), anatomy))] for h in (top, bottom)]
    return np.concatenate([poles[:1], rings.reshape(-1, 3), poles[1:]])


def _rig_weights(v: np.ndarray, anatomy: _Anatomy) -> np.ndarray:
    """[6890, 24] skinning weights: a nested partition of unity of smooth steps (head / neck / arms / trunk)."""
    x, y, z = v.T
    joints = np.array(anatomy.joints)
    head_y, neck_y = joints[HEAD_JOINT, 1], joints[NECK_JOINT, 1]
    weights = np.zeros((len(v), NUM_JOINTS))
    # Head above a jaw-line plane that rises towards the back of the skull.
    jaw = y + RIG_JAW_TILT * (z - joints[HEAD_JOINT, 2])
    head = _smoothstep(jaw, head_y - RIG_JAW_BELOW - RIG_BLEND_BAND, head_y - RIG_JAW_BELOW)
    # Neck: the column above the neck joint, away from the shoulders.
    neck = _smoothstep(y, neck_y - 2 * RIG_BLEND_BAND, neck_y) * (
        1.0 - _smoothstep(np.abs(x), RIG_NECK_HALF_WIDTH, RIG_NECK_HALF_WIDTH + 2 * RIG_BLEND_BAND)
    )
    weights[:, HEAD_JOINT] = head
    weights[:, NECK_JOINT] = (1.0 - head) * neck
    body = (1.0 - head) * (1.0 - neck)
    # Arms: collar -> shoulder -> elbow outwards in |x|, above the armpit.
    armpit = anatomy.arm_inner[1] - anatomy.arm_radius
    trunk = body.copy()
    for side, (collar, shoulder, elbow) in ((1.0, LEFT_ARM_JOINTS), (-1.0, RIGHT_ARM_JOINTS)):
        out_x, (collar_x, shoulder_x, elbow_x) = side * x, side * joints[[collar, shoulder, elbow], 0]
        arm = body * _smoothstep(out_x, RIG_NECK_HALF_WIDTH, collar_x + RIG_BLEND_BAND)
        arm = arm * _smoothstep(y, armpit - 2 * RIG_BLEND_BAND, armpit)
        to_shoulder = _smoothstep(out_x, shoulder_x - 2 * RIG_BLEND_BAND, shoulder_x)
        to_elbow = _smoothstep(out_x, elbow_x - 2 * RIG_BLEND_BAND, elbow_x)
        weights[:, collar] = arm * (1.0 - to_shoulder)
        weights[:, shoulder] = arm * to_shoulder * (1.0 - to_elbow)
        weights[:, elbow] = arm * to_shoulder * to_elbow
        trunk -= arm
    # Trunk: the spine joints by height, a smooth step between each consecutive pair.
    spine = np.array(SPINE_JOINTS)
    heights = joints[spine, 1]
    upper = np.clip(np.searchsorted(heights, y), 1, len(spine) - 1)  # y lies in [heights[upper - 1], heights[upper]]
    step = _smoothstep(y, heights[upper - 1], heights[upper])
    rows = np.arange(len(v))
    weights[rows, spine[upper]] = trunk * step
    weights[rows, spine[upper - 1]] = trunk * (1.0 - step)
    return weights


def _max_entropy_weights(points: np.ndarray, target: np.ndarray) -> np.ndarray | None:
    """Positive weights [K] with sum 1 and ``weights @ points == target``, closest to uniform in relative entropy.

    The weights are ``softmax(mu . (points - target))``; Newton's method on the convex ``logsumexp`` finds ``mu``.
    Returns None when it does not converge (the target is not strictly inside the points' convex hull).
    """
    offsets = points - target

    def log_partition(mu):
        logits = offsets @ mu
        return logits.max() + np.log(np.exp(logits - logits.max()).sum())

    mu = np.zeros(3)
    for _ in range(RIG_NEWTON_STEPS):
        logits = offsets @ mu
        weights = np.exp(logits - logits.max())
        weights /= weights.sum()
        grad = weights @ offsets  # the weighted mean offset, zero at the solution
        if np.linalg.norm(grad) < RIG_REGRESSOR_TOL:
            return weights
        hessian = (offsets * weights[:, None]).T @ offsets - np.outer(grad, grad)
        step = np.linalg.lstsq(hessian, grad, rcond=None)[0]
        # Backtracking line search keeps every step a descent step of the convex objective.
        size, current = 1.0, log_partition(mu)
        while log_partition(mu - size * step) > current - RIG_ARMIJO * size * grad @ step and size > RIG_MIN_LINE_STEP:
            size *= 0.5
        mu = mu - size * step
    return None


def _rig_regressor(v: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """[24, 6890] joint regressor whose rows are convex weights over nearby vertices that reproduce ``joints``.

    Row j spreads maximum-entropy weights over the vertices within a ball around joint j; the ball grows until the
    joint lies inside the hull of those vertices.
    """
    regressor = np.zeros((NUM_JOINTS, len(v)))
    for j, joint in enumerate(joints):
        for radius in RIG_REGRESSOR_RADII:
            ids = np.flatnonzero(np.linalg.norm(v - joint, axis=1) < radius)
            row = _max_entropy_weights(v[ids], joint) if ids.size >= RIG_REGRESSOR_MIN_VERTS else None
            if row is not None:
                regressor[j, ids] = row
                break
        else:
            raise RuntimeError(f"procedural rig: joint {j} is not inside the mesh")
    return regressor


def _rig_shapedirs(v: np.ndarray, weights: np.ndarray, anatomy: _Anatomy) -> np.ndarray:
    """[6890, 3, 10] shape directions (m per unit beta), smooth because they are masked by the skinning weights."""
    x, y, z = v.T
    joints = np.array(anatomy.joints)
    zero = np.zeros_like(x)
    left_arm, right_arm = weights[:, LEFT_ARM_JOINTS].sum(1), weights[:, RIGHT_ARM_JOINTS].sum(1)
    upper_arms = weights[:, LEFT_ARM_JOINTS[1:] + RIGHT_ARM_JOINTS[1:]].sum(1)
    trunk = weights[:, SPINE_JOINTS].sum(1)
    chest = _smoothstep(y, anatomy.belly_centre[1], anatomy.chest_centre[1])  # 0 at the waist, 1 at the chest
    head, neck = weights[:, HEAD_JOINT, None], weights[:, NECK_JOINT, None]
    head_offset = v - np.array(anatomy.head_centre)
    neck_axis_z = np.interp(
        y, [anatomy.neck_bottom[1], anatomy.neck_top[1]], [anatomy.neck_bottom[2], anatomy.neck_top[2]]
    )
    # The neck stretches from nothing at its base to the full lift under the head, which rides on top.
    neck_lift = head[:, 0] + neck[:, 0] * _smoothstep(
        y, joints[NECK_JOINT, 1] - 2 * RIG_BLEND_BAND, joints[HEAD_JOINT, 1]
    )
    arm_y, arm_z = anatomy.arm_inner[1], anatomy.arm_inner[2]
    fields = [
        v - joints[0],  # size
        np.stack([left_arm - right_arm, zero, zero], 1),  # shoulder width
        head_offset * head,  # head size
        np.stack([zero, neck_lift, zero], 1),  # neck length
        np.stack([zero, zero, (z - anatomy.axis_body_z) * trunk * chest], 1),  # chest depth
        np.stack([x * trunk * (1.0 - chest), zero, zero], 1),  # waist width
        np.stack([-RIG_FACE_NARROWING * head_offset[:, 0], head_offset[:, 1], zero], 1) * head,  # face length
        np.stack([x, zero, z - neck_axis_z], 1) * neck,  # neck thickness
        np.stack([zero, y - arm_y, z - arm_z], 1) * upper_arms[:, None],  # upper-arm thickness
        np.stack([zero, left_arm + right_arm, zero], 1),  # shoulder height
    ]
    return np.stack(fields, axis=-1) * np.array(RIG_BETA_SCALES)


def procedural_rig(seed: int = 0) -> dict[str, np.ndarray]:
    """A deterministic head-and-shoulders rig in SMPL's array layout, generated from scratch (no SMPL data).

    A closed mesh (UV-sphere topology, 6890 vertices, 13776 triangles) of a head (ellipsoid with a nose), neck,
    shoulders with upper-arm stubs in SMPL's rest T-pose, and a torso down to 0.45 m below the neck joint, in SMPL
    metres. The neck joint sits where SMPL's does relative to the face, so the release's face-frame normalisation
    puts the face centre near the canonical origin. Joints below the torso and beyond the stubs (legs, forearms,
    hands) are folded inside the mesh. Skinning uses joints 0, 3, 6, 9 (trunk), 12 (neck), 15 (head) and 13/16/18,
    14/17/19 (left, right collar/shoulder/elbow). The 10 shape directions are: size, shoulder width, head size,
    neck length, chest depth, waist width, face length, neck thickness, upper-arm thickness, shoulder height.
    ``posedirs`` are zero: the rig has no pose correctives.

    Args:
        seed: 0 gives the nominal figure; other seeds scale the head, shoulder width and torso width slightly.

    Returns:
        dict with float64 ``v_template`` [6890, 3], ``shapedirs`` [6890, 3, 10], ``posedirs`` [6890, 3, 207],
        ``J_regressor`` [24, 6890], ``weights`` [6890, 24] and int64 ``kintree_table`` [2, 24], ``f`` [13776, 3].

    Example:
        >>> model = BodyModel.from_arrays(rig := procedural_rig(), rig_valid_index(rig))
    """
    anatomy = _Anatomy().jittered(seed)
    v_template = _rig_vertices(anatomy)
    weights = _rig_weights(v_template, anatomy)
    return {
        "v_template": v_template,
        "shapedirs": _rig_shapedirs(v_template, weights, anatomy),
        "posedirs": np.zeros((SMPL_NUM_VERTS, 3, NUM_POSE_BASIS)),
        "J_regressor": _rig_regressor(v_template, np.array(anatomy.joints)),
        "weights": weights,
        "kintree_table": np.array([SMPL_PARENTS, range(NUM_JOINTS)], dtype=np.int64),
        "f": _sphere_faces(),
    }


def rig_valid_index(rig: dict[str, np.ndarray]) -> np.ndarray:
    """Sorted int64 ids of the rig vertices eligible for the nearest-vertex lookup (the release's 3595 for SMPL).

    The upper body: vertices higher than RIG_VALID_DROP below the neck joint and no farther out than RIG_VALID_REACH
    beyond the shoulder joints (the arm stubs leave the portrait box once lowered to the mean pose).
    """
    v = rig["v_template"]
    joints = rig["J_regressor"] @ v
    shoulder_x = 0.5 * (joints[16, 0] - joints[17, 0])
    keep = (v[:, 1] >= joints[NECK_JOINT, 1] - RIG_VALID_DROP) & (np.abs(v[:, 0]) <= shoulder_x + RIG_VALID_REACH)
    return np.flatnonzero(keep).astype(np.int64)
