"""The synthetic dataset: format, determinism, exact camera and pose labels, expression effects, face camera, writing.

Conventions checked here (aniportrait.cameras): a portrait camera at (pitch, yaw) sits at
r (sin p cos y, cos p, sin p sin y) + ORIGIN_OFFSET and looks at the origin; a larger yaw moves it towards -x (the
figure's right, SMPL x points to the figure's left). Its right axis then tilts towards +z, so points in front of the
head (the nose) move to the image right relative to the head: the figure appears to turn towards the image right.
"""

import json
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

from aniportrait import cameras, constants
from aniportrait.data import synth
from aniportrait.data.format import FACES_DIR, FORMAT, IMAGES_DIR, LABEL_SHAPES, LABELS_FILE, META_FILE, VERSION

FRONTAL = (math.pi / 2, math.pi / 2)
PART = synth.PART


def neutral(seed: int = 3, style: str = "short") -> synth.Figures:
    """One figure: frontal camera, mean pose, neutral expression, zero betas, the given hair style."""
    fig = synth.sample_figures(seed, 1)
    return fig.with_(
        camera=np.array([FRONTAL]),
        pose=np.zeros((1, 6, 3)),
        expression=np.zeros((1, 64)),
        betas=np.zeros((1, 10)),
        hair_style=np.array([synth.HAIR_STYLES.index(style)]),
        hair_volume=np.array([1.08]),
    )


def stack(*figs: synth.Figures) -> synth.Figures:
    return synth.Figures(**{k: np.concatenate([getattr(f, k) for f in figs]) for k in vars(figs[0])})


def render(fig, res=64, face_res=64, **kw):
    return synth.render_figures(fig, res, face_res, return_parts=True, **kw)


def centroid(mask: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(mask)
    assert len(rows), "empty region"
    return np.array([rows.mean(), cols.mean()])


def in_parts(labels: np.ndarray, *names: str) -> np.ndarray:
    return np.isin(labels, [PART[n] for n in names])


HEAD = ("skull", "jaw", "nose", "ear_l", "ear_r", "hair", "hair_back", "bun", "eye", "brow", "mouth")


# -- format ----------------------------------------------------------------------------------------------------------


def test_dataset_follows_the_format(tmp_path):
    out = synth.synthesize(tmp_path / "ds", 5, res=32, seed=1, progress=False)
    assert out == tmp_path / "ds"
    meta = json.loads((out / META_FILE).read_text())
    assert meta["format"] == FORMAT and meta["version"] == VERSION
    assert (meta["image_size"], meta["face_size"], meta["count"]) == (32, 16, 5)
    assert isinstance(meta["source"], str) and meta["face_camera"]["fov_degrees"] == cameras.FACE_CAMERA_FOV_DEGREES
    with np.load(out / LABELS_FILE, allow_pickle=False) as npz:
        assert set(npz.files) == {"ids", *LABEL_SHAPES}
        ids = npz["ids"]
        assert ids.dtype.kind == "U" and ids.shape == (5,) and len(set(ids.tolist())) == 5
        for key, shape in LABEL_SHAPES.items():
            assert npz[key].dtype == np.float32 and npz[key].shape == (5, *shape), key
            assert np.isfinite(npz[key]).all()
        camera, pose, expression = npz["camera"], npz["pose"], npz["expression"]
    assert np.all(np.abs(camera[:, 0] - math.pi / 2) <= synth.CAMERA_PITCH_RANGE + 1e-6)
    assert np.all(np.abs(camera[:, 1] - math.pi / 2) <= synth.CAMERA_YAW_RANGE + 1e-6)
    assert np.all(np.abs(pose) <= np.array(synth.POSE_RANGES) + 1e-6)
    assert np.abs(expression[:, 4:]).max() < 0.5  # only the documented coefficients vary widely
    for stem in ids:
        for folder, size in ((IMAGES_DIR, 32), (FACES_DIR, 16)):
            with Image.open(out / folder / f"{stem}.png") as im:
                assert im.format == "PNG" and im.mode == "RGB" and im.size == (size, size)
    assert sorted(os.listdir(tmp_path)) == ["ds"]  # no temporary folder left
    from aniportrait.data.dataset import check_dataset

    assert check_dataset(out).ok


def test_default_face_size_and_white_background(tmp_path):
    out = synth.synthesize(tmp_path / "ds", 1, res=24, face_res=20, progress=False)
    assert json.loads((out / META_FILE).read_text())["face_size"] == 20
    image = np.asarray(Image.open(out / IMAGES_DIR / "000000.png"))
    assert (image[0] == 255).all()  # the top row is background: white, like the release's renders


# -- determinism -----------------------------------------------------------------------------------------------------


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_files_and_another_seed_differs(tmp_path):
    a = _files(synth.synthesize(tmp_path / "a", 4, res=32, seed=7, progress=False))
    b = _files(synth.synthesize(tmp_path / "b", 4, res=32, seed=7, progress=False))
    c = _files(synth.synthesize(tmp_path / "c", 4, res=32, seed=8, progress=False))
    assert a == b  # bitwise: labels.npz (fixed zip timestamps), PNGs and dataset.json
    assert a.keys() == c.keys()
    for key in a:
        if key.endswith(".png"):
            assert a[key] != c[key], key
    with np.load(tmp_path / "a" / LABELS_FILE) as la, np.load(tmp_path / "c" / LABELS_FILE) as lc:
        for key in LABEL_SHAPES:
            assert not np.array_equal(la[key], lc[key]), key


def test_figure_labels_do_not_depend_on_batching():
    whole = synth.sample_figures(5, 6)
    tail = synth.sample_figures(5, 2, start=4)
    np.testing.assert_array_equal(whole.id[4:], tail.id)
    np.testing.assert_array_equal(whole.camera[4:], tail.camera)


# -- identity --------------------------------------------------------------------------------------------------------


def test_id_encodes_the_appearance():
    fig = synth.sample_figures(11, 8)
    code = fig.id
    assert code.shape == (8, 80) and code.dtype == np.float32
    np.testing.assert_allclose(code[:, synth.ID_LAYOUT["hair_rgb"]], 2 * fig.hair_rgb - 1, atol=1e-6)
    np.testing.assert_allclose(code[:, synth.ID_LAYOUT["shirt_rgb"]], 2 * fig.shirt_rgb - 1, atol=1e-6)
    np.testing.assert_allclose(code[:, 0], 2 * fig.skin_tone - 1, atol=1e-6)
    styles = code[:, synth.ID_LAYOUT["hair_style"]].argmax(1)
    np.testing.assert_array_equal(styles, fig.hair_style)
    # The rendered shirt has the chromaticity the id says (Lambert shading scales all channels alike).
    images, _, parts, _ = render(fig.with_(camera=np.tile(FRONTAL, (8, 1))))
    for i in range(8):
        shirt = in_parts(parts[i], "torso", "chest")
        shirt[1:-1, 1:-1] &= shirt[:-2, 1:-1] & shirt[2:, 1:-1] & shirt[1:-1, :-2] & shirt[1:-1, 2:]  # no edges
        pixels = images[i][shirt].astype(float)
        seen = np.median(pixels[pixels.max(1) < 250], axis=0)  # unclipped by the light
        wanted = (code[i, synth.ID_LAYOUT["shirt_rgb"]] + 1) / 2
        np.testing.assert_allclose(seen / seen.sum(), wanted / wanted.sum(), atol=0.03)


# -- expression ------------------------------------------------------------------------------------------------------


def _with_expression(fig, index, value):
    e = np.zeros((1, 64), np.float32)
    e[0, index] = value
    return fig.with_(expression=e)


@pytest.mark.parametrize(
    ("index", "value", "region"),
    [(0, 1.5, ("mouth", "jaw")), (1, 1.5, ("mouth",)), (2, 1.0, ("eye",)), (3, 1.0, ("brow",))],
)
def test_documented_expression_coefficients_change_their_face_region(index, value, region):
    base = neutral()
    _, faces, _, labels = render(stack(base, _with_expression(base, index, value)), face_res=96)
    changed = np.any(faces[0] != faces[1], axis=-1)
    assert changed.sum() > 15, synth.EXPRESSION_EFFECTS[index]
    # The changed pixels belong to the documented feature in one of the two renders (the jaw drops with the mouth;
    # a one-pixel rim may show the skin around the feature).
    feature = in_parts(labels[0], *region) | in_parts(labels[1], *region)
    grown = feature.copy()
    grown[1:] |= feature[:-1]
    grown[:-1] |= feature[1:]
    grown[:, 1:] |= feature[:, :-1]
    grown[:, :-1] |= feature[:, 1:]
    assert (changed & grown).sum() >= 0.9 * changed.sum()


def test_expression_meaning_matches_the_procedural_3dmm():
    from aniportrait.models.face3dmm import EXPRESSION_MEANING

    assert len(EXPRESSION_MEANING) == len(synth.EXPRESSION_EFFECTS) == 4
    for index, meaning in enumerate(EXPRESSION_MEANING):
        assert meaning.split()[0] in synth.EXPRESSION_EFFECTS[index], (meaning, synth.EXPRESSION_EFFECTS[index])


def test_expression_directions():
    base = neutral()
    variants = stack(
        base,
        _with_expression(base, 0, 1.5),
        _with_expression(base, 2, 1.0),
        _with_expression(base, 3, 1.0),
        _with_expression(base, 20, 3.0),
    )
    _, faces, _, labels = render(variants, face_res=96)
    mouth, opened = labels[0] == PART["mouth"], labels[1] == PART["mouth"]
    assert opened.sum() > 1.5 * mouth.sum()  # mouth open: a taller mouth with a dark inside
    assert faces[1][opened].mean() < faces[0][mouth].mean()
    assert (labels[2] == PART["eye"]).sum() < 0.5 * (labels[0] == PART["eye"]).sum()  # blink
    assert centroid(labels[3] == PART["brow"])[0] < centroid(labels[0] == PART["brow"])[0] - 0.5  # brows up
    np.testing.assert_array_equal(faces[4], faces[0])  # coefficients past the documented ones have no effect


# -- camera ----------------------------------------------------------------------------------------------------------


def test_renderer_rays_are_the_portrait_cameras_rays():
    """Every pixel's hit point lies on the ray portrait_rays gives for that pixel (same origin, offset, layout)."""
    res = 32
    fig = synth.sample_figures(2, 2)
    camera = torch.from_numpy(fig.camera)
    scene = synth._build_scene(fig)
    origin, rotation = synth._portrait_camera(camera)
    t, part, basis = synth._cast(scene, origin, rotation, constants.FOV_DEGREES, res)
    ndc = torch.linspace(-1, 1, res)
    y, x = torch.meshgrid(-ndc, ndc, indexing="ij")
    pix = torch.stack([x.reshape(-1), y.reshape(-1), torch.ones(res * res)], -1)
    hits = origin[:, None] + t[..., None] * (pix @ basis)  # [B, P, 3]
    points, _ = cameras.portrait_rays(camera, res, 2)
    unit = torch.nn.functional.normalize(points[:, :, 1] - points[:, :, 0], dim=-1)
    start = points[:, :, 0] - constants.RAY_START * unit
    found = part >= 0
    assert found.float().mean() > 0.3
    along = hits - start
    off_ray = torch.linalg.cross(along, unit, dim=-1).norm(dim=-1)
    assert off_ray[found].max() < 1e-4 and ((along * unit).sum(-1)[found] > 0).all()
    # ... and on the surface of the part the label names: |L^-1 (p - c)| = 1.
    b, p = found.nonzero(as_tuple=True)
    k = part[b, p]
    local = torch.einsum("mij,mj->mi", scene.inverse[b, k], hits[b, p] - scene.centre[b, k])
    assert (local.norm(dim=-1) - 1).abs().max() < 1e-3


def test_larger_yaw_turns_the_figure_towards_the_image_right():
    base = neutral(style="buzz")
    yaws = (-0.4, 0.0, 0.4)
    fig = stack(*(base.with_(camera=np.array([[math.pi / 2, math.pi / 2 + dy]])) for dy in yaws))
    _, _, labels, _ = render(fig, res=96)
    offsets = []
    for lab in labels:
        head = centroid(in_parts(lab, *HEAD))
        offsets.append(centroid(in_parts(lab, "nose", "mouth", "eye"))[1] - head[1])
    assert offsets[0] < offsets[1] - 1 < offsets[2] - 2  # the face moves right of the head as yaw grows
    assert abs(offsets[1]) < 1.0  # frontal: centred
    # The camera moved towards -x, the figure's right: its right ear (image left) shows more, the left one less.
    assert (labels[2] == PART["ear_r"]).sum() > (labels[2] == PART["ear_l"]).sum()
    assert (labels[0] == PART["ear_l"]).sum() > (labels[0] == PART["ear_r"]).sum()


def test_pitch_moves_the_camera_up_and_down():
    base = neutral()
    fig = stack(base, base.with_(camera=np.array([[math.pi / 2 - 0.2, math.pi / 2]])))
    _, _, labels, _ = render(fig, res=64)
    # pitch < pi/2: cos(pitch) > 0, the camera rises and looks down on the figure: the top of the head shows more.
    assert (labels[1] == PART["hair"]).sum() > (labels[0] == PART["hair"]).sum()


# -- pose ------------------------------------------------------------------------------------------------------------


def _pose(joint, axis, value):
    pose = np.zeros((1, 6, 3), np.float32)
    pose[0, joint, axis] = value
    return pose


def test_head_nod_moves_the_head_only():
    base = neutral()
    fig = stack(base, base.with_(pose=_pose(3, 2, 0.3)))  # head (J15) about X: nod down
    _, _, labels, _ = render(fig, res=64)
    head0, head1 = in_parts(labels[0], *HEAD), in_parts(labels[1], *HEAD)
    assert (head0 ^ head1).sum() > 0.1 * head0.sum()
    assert centroid(in_parts(labels[1], "nose"))[0] > centroid(in_parts(labels[0], "nose"))[0] + 1  # nose goes down
    body = ("torso", "chest", "trapezius_l", "trapezius_r", "deltoid_l", "deltoid_r", "arm_l", "arm_r")
    np.testing.assert_array_equal(
        in_parts(labels[0], *body) & ~head0 & ~head1, in_parts(labels[1], *body) & ~head0 & ~head1
    )


def test_shoulder_labels_move_their_shoulder():
    base = neutral()
    fig = stack(base, base.with_(pose=_pose(4, 0, 0.3)), base.with_(pose=_pose(1, 0, 0.15)))
    _, _, labels, _ = render(fig, res=96)
    left = ("deltoid_l", "arm_l")
    right = ("deltoid_r", "arm_r", "trapezius_r")
    # Raising the left shoulder (J16 about Z) lifts the left arm (image right at the frontal view) only. The portrait
    # shows only the top of the arm, so the change is a rim of pixels.
    assert centroid(in_parts(labels[0], *left))[1] > 48
    assert (in_parts(labels[1], *left) ^ in_parts(labels[0], *left)).sum() > 20
    assert centroid(in_parts(labels[1], *left))[0] < centroid(in_parts(labels[0], *left))[0] - 0.3
    np.testing.assert_array_equal(in_parts(labels[1], *right), in_parts(labels[0], *right))
    # A left collar (J13) shrug moves the left trapezius and lifts the arm with it.
    assert (in_parts(labels[2], "trapezius_l") ^ in_parts(labels[0], "trapezius_l")).sum() > 20
    assert centroid(in_parts(labels[2], *left))[0] < centroid(in_parts(labels[0], *left))[0] - 1
    np.testing.assert_array_equal(in_parts(labels[2], *right), in_parts(labels[0], *right))


# -- face camera -----------------------------------------------------------------------------------------------------


def test_face_camera_conventions():
    pose = torch.zeros(3, 6, 3)
    pose[1, 3] = torch.tensor([0.1, 0.4, -0.2])
    pose[2, 0] = torch.tensor([0.0, 0.3, 0.1])
    joints = synth._body().joints(torch.zeros(3, 10), torch.zeros(3, 6, 3))
    head = cameras.posed_head_transform(pose, joints)
    origin, rotation = cameras.face_camera(head)
    # Mean pose: in front of the face centre (the canonical origin) at distance 1, oriented like the frontal camera.
    np.testing.assert_allclose(origin[0].numpy(), [0, 0, cameras.FACE_CAMERA_DISTANCE], atol=1e-5)
    frontal = cameras.look_at_rotation(cameras.camera_origin(torch.tensor([FRONTAL])))
    np.testing.assert_allclose(rotation[0].numpy(), frontal[0].numpy(), atol=1e-5)
    # Always: the face centre lies on the optical axis, distance away; the rotation is orthonormal; it follows the head.
    centre = cameras.face_center(head)
    local = torch.einsum("bji,bj->bi", rotation, centre - origin)
    np.testing.assert_allclose(local.numpy(), np.tile([0, 0, -cameras.FACE_CAMERA_DISTANCE], (3, 1)), atol=1e-5)
    np.testing.assert_allclose((rotation.transpose(1, 2) @ rotation).numpy(), np.tile(np.eye(3), (3, 1, 1)), atol=1e-5)
    np.testing.assert_allclose(rotation[1].numpy(), head[0][1].numpy(), atol=1e-5)
    # Looking from a view origin: the camera sits on the line from the face centre to it.
    view = torch.tensor([[0.5, 0.2, 2.0]]).expand(3, 3)
    origin_v, _ = cameras.face_camera(head, view)
    direction = torch.nn.functional.normalize(view - centre, dim=-1)
    np.testing.assert_allclose((origin_v - centre).numpy(), direction.numpy(), atol=1e-5)
    points, ray_origin = cameras.face_rays(head, 8, 4)
    assert points.shape == (3, 64, 4, 3) and torch.equal(ray_origin, origin)


def test_face_crop_centres_the_face():
    fig = synth.sample_figures(21, 8)
    for face_view in ("frontal", "portrait"):
        *_, labels = render(fig, res=32, face_res=64, face_view=face_view)
        for lab in labels:
            head = in_parts(lab, *HEAD)
            assert head.mean() > 0.4  # the head fills most of the crop
            row, col = centroid(in_parts(lab, "eye", "nose"))  # the face centre is at eye height, mid-face
            assert abs(col - 31.5) < 6 and abs(row - 31.5) < 6, (face_view, row, col)
    # Frontal face view: the eyes sit on the middle row, symmetric about the middle column, for any head shape (the
    # head scales about the face centre, so the constant FACE_CENTER_OFFSET of the face camera stays exact).
    base = neutral()
    shapes = np.zeros((3, 10), np.float32)
    shapes[1, [0, 2, 6]] = 2.0  # big, large head, long face
    shapes[2, [0, 2, 6]] = -2.0
    fig = stack(*(base.with_(betas=shapes[i : i + 1], pose=_pose(3, 1, 0.3 * i)) for i in range(3)))
    _, _, _, labels = render(fig, res=32, face_res=64, face_view="frontal")
    for lab in labels:
        row, col = centroid(lab == PART["eye"])
        assert abs(col - 31.5) < 0.5 and abs(row - 31.5) < 2.5, (row, col)


# -- rendering internals ---------------------------------------------------------------------------------------------


def test_tile_culling_does_not_change_the_image(monkeypatch):
    """Testing each ellipsoid only in the tiles its silhouette's bounding box meets is exact."""
    fig = synth.sample_figures(4, 3)
    culled = synth.render_figures(fig, 40, 24)
    original = synth._conic_range

    def unbounded(q, axis):  # every tile for every ellipsoid
        lo, hi, _ = original(q, axis)
        return lo, hi, torch.zeros_like(lo, dtype=torch.bool)

    monkeypatch.setattr(synth, "_conic_range", unbounded)
    full = synth.render_figures(fig, 40, 24)
    np.testing.assert_array_equal(culled[0], full[0])
    np.testing.assert_array_equal(culled[1], full[1])


# -- writing ---------------------------------------------------------------------------------------------------------


def test_refuses_a_non_empty_out_dir(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        synth.synthesize(out, 2, res=16, progress=False)
    assert os.listdir(out) == ["keep.txt"]
    assert sorted(os.listdir(tmp_path)) == ["ds"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (synth.synthesize(empty, 1, res=16, progress=False) / META_FILE).is_file()


@pytest.mark.parametrize("bad", [{"n": 0}, {"res": 0}, {"seed": -1}])
def test_rejects_bad_arguments(tmp_path, bad):
    args = {"n": 2, "res": 16, "seed": 0} | bad
    with pytest.raises(ValueError):
        synth.synthesize(tmp_path / "ds", progress=False, **args)
    assert not (tmp_path / "ds").exists()


def test_failure_midway_leaves_no_output(tmp_path, monkeypatch):
    calls = []
    real = synth._write_png

    def flaky(path, pixels):
        calls.append(path)
        if len(calls) == 5:
            raise OSError("disk full")
        real(path, pixels)

    monkeypatch.setattr(synth, "_write_png", flaky)
    threads = torch.get_num_threads()
    with pytest.raises(OSError, match="disk full"):
        synth.synthesize(tmp_path / "ds", 40, res=16, progress=False)
    assert os.listdir(tmp_path) == []  # neither the dataset nor the temporary folder
    assert torch.get_num_threads() == threads
