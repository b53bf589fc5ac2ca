"""Named constants of the release's normalised portrait frame (YueWuHKUST/AniPortraitGAN).

The comments name the release file a value comes from where it is set in one place.

Units: "canonical" units are the release's normalised face frame; "warped" units are canonical units times
``WARP_SCALE`` (the release's ``UniformBoxWarp(0.24)``).

The release's semantics and the quirks kept for parity: docs/release.md.
"""

# Scaling applied to every network input ("UniformBoxWarp(0.24)": x * 2 / 0.24).
WARP_SCALE = 2.0 / 0.24

# Canonical texture box: manifold textures cover x in [-SAMPLE_SCALE, SAMPLE_SCALE] and
# y in SAMPLE_CENTER + [-SAMPLE_SCALE, SAMPLE_SCALE] (generators_manifold_sr.py).
SAMPLE_CENTER = -0.02830771
SAMPLE_SCALE = 0.22

# The face frame (gen_video.py, renderer.py): SMPL metres -> canonical units is
# ((v - J_neck) / SMPL_SCALE - (0, FACE_TY, FACE_TZ)) / FACE_RADIUS.
FACE_RADIUS = 0.52767998683149
FACE_TY = 0.067489409707008
FACE_TZ = 0.050608165033568
SMPL_SCALE = 2.2314079

# Portrait camera (gen_video.py): orbit radius, full field of view, near/far distance along unit rays.
CAMERA_RADIUS = 1.0 / FACE_RADIUS  # 1.895087979372887
FOV_DEGREES = 12.0
RAY_START = 1.675087979372887
RAY_END = 2.115087979372887
# Added to the ray samples (the release also shifts its ray origins; depth is measured from the un-shifted camera):
# ([0, 0.052552, 0] - [0, FACE_TY, FACE_TZ]) / FACE_RADIUS, then y += 0.01.
ORIGIN_OFFSET = (0.0, (0.052552 - FACE_TY) / FACE_RADIUS + 0.01, -FACE_TZ / FACE_RADIUS)
# Depth colour range of the release's depth videos (gen_video.py).
DEPTH_NEAR = 1.7550879793728869
DEPTH_FAR = 2.115087979372887

# Manifold levels: linspace(LEVELS_START, LEVELS_END, num_manifolds).
LEVELS_START = 23.0
LEVELS_END = 8.0
# SampleNet subtracts this centre from its (warped) input (siren.py).
SAMPLE_NET_CENTER = (0.0, 0.0, -1.5)
# Alpha of the low-resolution textures: 1 - exp(-DELTA_ALPHA * softplus(sigma)) (generators/utils.py).
DELTA_ALPHA = 0.04
# Intersections interpolate only where |delta s| exceeds this (siren.py).
MIN_STEP = 0.05
# Depth given to invalid manifold entries before compositing (generators_manifold_sr.py), and the depth of pixels
# that nothing covers (the release gives NaN there).
INVALID_DEPTH = 10.0
# Manifold-SR orthogonal rays: origin z, t range (so z runs 0.2 -> -0.2), direction (0, 0, -1).
ORTHO_ORIGIN_Z = 1.0
ORTHO_T_NEAR = 0.8
ORTHO_T_FAR = 1.2

# SMPL joints driven by the pose keyframes, in the order of the [N, 6, 3] pose files.
POSE_JOINTS = (12, 13, 14, 15, 16, 17)  # neck, left collar, right collar, head, left shoulder, right shoulder
# The canonical "mean pose" (renderer.py): ZYX Euler adjusts of the head and the two shoulders.
MEAN_POSE_ADJUST = {15: (0.0, 0.0, 0.15536945), 16: (-1.05, 0.0, 0.13), 17: (1.05, 0.0, 0.13)}
# SMPL's kinematic tree (parent of each of the 24 joints).
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
SMPL_NUM_VERTS = 6890
SMPL_NUM_FACES = 13776
