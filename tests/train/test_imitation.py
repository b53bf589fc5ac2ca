"""The 3DMM teacher of the expression deformation: where its points lie, their targets, per-identity registration."""

import math

import pytest
import torch

from aniportrait.models.body import BodyModel
from aniportrait.models.deformation import DeformNet
from aniportrait.models.face_procedural import procedural_3dmm
from aniportrait.models.face_registration import rig_landmark_bary, smpl_landmarks
from aniportrait.train.imitation import SURFACE_JITTER, ExpressionTeacher, follow_fractions, nearest_vertex_targets
from aniportrait.train.warmups import box_points


@pytest.fixture(scope="module")
def body():
    return BodyModel.procedural()


@pytest.fixture(scope="module")
def teacher(body):
    bary = rig_landmark_bary(body)
    return ExpressionTeacher(procedural_3dmm(), lambda betas: smpl_landmarks(body, bary, betas))


def labels(batch=2, mouth=1.5, betas=0.0):
    expression = torch.zeros(batch, 64)
    expression[:, 0] = mouth
    return {"z_id": torch.zeros(batch, 80), "betas": torch.full((batch, 10), betas), "expression": expression}


def test_half_the_points_lie_on_the_face_and_carry_its_deformation(teacher):
    """The old sampling (portrait ray samples only) put a few dozen of 4,096 points near the face."""
    count = 512
    far = box_points(2 * count, torch.Generator().manual_seed(0)).expand(2, -1, -1)
    points, target = teacher.samples(labels(), far, count, torch.Generator().manual_seed(1), max_distance=0.01)
    assert points.shape == target.shape == (2, 2 * count, 3)
    registered = teacher.register(labels()["betas"])
    face = registered.canonical_vertices(labels()["z_id"], labels()["expression"])
    distance = torch.cdist(points, face).min(dim=-1).values
    assert (distance[:, :count] < 4 * SURFACE_JITTER).float().mean() > 0.95, "surface points hug the face"
    moving = target[:, :count].norm(dim=-1) > 0.003  # the lower lip and chin move by up to ~1.2 cm at 1.5
    assert moving.float().mean() > 0.05
    # Far points beyond the threshold keep still: zero targets.
    far_distance = distance[:, count:]
    assert (target[:, count:][far_distance >= 0.01] == 0).all()


def test_targets_invert_the_3dmm_expression(teacher):
    far = box_points(64, torch.Generator().manual_seed(0)).expand(1, -1, -1)
    _, open_target = teacher.samples(labels(1, 1.0), far, 64, torch.Generator().manual_seed(2), 0.01)
    _, twice = teacher.samples(labels(1, 2.0), far, 64, torch.Generator().manual_seed(2), 0.01)
    surface = slice(0, 64)
    torch.testing.assert_close(twice[:, surface], 2 * open_target[:, surface], atol=1e-6, rtol=1e-5)
    neutral = teacher.samples(labels(1, 0.0), far, 64, torch.Generator().manual_seed(2), 0.01)[1]
    assert neutral.abs().max() == 0


def test_registration_follows_each_identitys_body_shape(teacher):
    """Canonical space follows the body's shape, so the 3DMM must too: a taller neck lifts the face."""
    short, tall = teacher.register(torch.zeros(1, 10)), teacher.register(torch.full((1, 10), 1.0))
    base = teacher.face.vertices(torch.zeros(1, 80), torch.zeros(1, 64))
    shift = (tall.to_canonical(base) - short.to_canonical(base)).mean(dim=1).norm()
    assert shift > 0.005, "betas move the registered face by more than half a centimetre"
    both = teacher.register(torch.stack([torch.zeros(10), torch.full((10,), 1.0)]))
    assert both.per_identity and both.rotation.shape == (2, 3, 3)
    torch.testing.assert_close(both.to_canonical(base.expand(2, -1, -1))[1:], tall.to_canonical(base))


@pytest.mark.parametrize("mean_shape", [False, True])
def test_teacher_on_body_registers_where_canonical_space_puts_the_face(body, teacher, mean_shape):
    """``on_body`` is the teacher the trainer builds: per identity's betas, or at the mean shape for every identity."""
    built = ExpressionTeacher.on_body(procedural_3dmm(), body, rig_landmark_bary(body), mean_shape=mean_shape)
    betas = torch.stack([torch.zeros(10), torch.full((10,), 1.0)])
    landmarks = built.register(betas).canonical_landmarks()
    if mean_shape:
        torch.testing.assert_close(landmarks[1], landmarks[0])
        torch.testing.assert_close(landmarks, teacher.register(torch.zeros_like(betas)).canonical_landmarks())
    else:
        assert (landmarks[1] - landmarks[0]).norm(dim=-1).mean() > 0.005
        torch.testing.assert_close(landmarks, teacher.register(betas).canonical_landmarks())


class _TeacherField(torch.nn.Module):
    """A stand-in DeformNet whose displacement is the teacher's target at the nearest expressive 3DMM vertex."""

    def __init__(self, teacher, scale=1.0):
        super().__init__()
        self.teacher, self.scale = teacher, scale

    def mapping(self, code):
        return code, code

    def forward(self, points, code, _):
        registered = self.teacher.register(torch.zeros(code.shape[0], 10))
        vertices = registered.canonical_vertices(code[:, :80], code[:, 80:])
        targets = -registered.canonical_expression_offsets(code[:, 80:])
        d = self.scale * nearest_vertex_targets(points, vertices, targets)[1]
        return points + d, d


def test_follow_fractions_measure_the_share_of_the_teacher_deformation(teacher):
    z_id = torch.zeros(2, 80)
    full = follow_fractions(_TeacherField(teacher), teacher, z_id, coefficients=[0, 2], values=[1.0])
    assert set(full) == {(0, 1.0), (2, 1.0)}
    for measured in full.values():
        assert measured["fraction"] == pytest.approx(1.0, abs=1e-4) and measured["cosine"] == pytest.approx(
            1.0, abs=1e-4
        )
    quarter = follow_fractions(_TeacherField(teacher, 0.25), teacher, z_id, coefficients=[1], values=[0.5])
    assert quarter[(1, 0.5)]["fraction"] == pytest.approx(0.25, abs=1e-4)
    still = DeformNet(hidden_dim=16, mapping_hidden_dim=16)  # zero final layer: no deformation
    assert follow_fractions(still, teacher, z_id, coefficients=[3], values=[1.0])[(3, 1.0)]["fraction"] == 0.0


def test_nearest_vertex_targets_take_each_points_nearest_vertex():
    vertices = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]])
    targets = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])
    points = torch.tensor([[[0.9, 0.1, 0.0], [0.1, 1.8, 0.0], [-0.2, 0.0, 0.0]]])
    distance, target = nearest_vertex_targets(points, vertices, targets)
    torch.testing.assert_close(target, targets[:, [1, 2, 0]])
    torch.testing.assert_close(distance, torch.tensor([[math.hypot(0.1, 0.1), math.hypot(0.1, 0.2), 0.2]]))


def _share_in_region(teacher, coefficient, region_share, expression):
    """The share of the surface points drawn for ``expression`` that land where ``coefficient`` moves the face by at
    least half its largest displacement."""
    count = 1024
    batch = {"z_id": torch.zeros(1, 80), "betas": torch.zeros(1, 10), "expression": expression[None]}
    far = box_points(count, torch.Generator().manual_seed(0))[None]
    points, _ = teacher.samples(batch, far, count, torch.Generator().manual_seed(2), 0.01, region_share)
    unit = torch.zeros(1, 64)
    unit[0, coefficient] = 1.0
    registered = teacher.register(batch["betas"])
    size = registered.canonical_expression_offsets(unit)[0].norm(dim=-1)
    region = registered.canonical_vertices(batch["z_id"], batch["expression"])[0][size >= 0.5 * size.max()]
    near = torch.cdist(points[0, :count], region).min(dim=-1).values < 2 * SURFACE_JITTER
    return near.float().mean().item()


def test_region_share_gives_a_coefficient_that_moves_a_small_area_its_points(teacher):
    """The smile moves about 1% of the procedural face by at least half its largest displacement, the raised brows a
    quarter: drawn uniformly, the smile's region gets a few percent of the surface points; with half of them drawn
    from the active coefficients' regions it gets seven times as many, and still four times as many beside the
    brows at an equal value."""
    smile, brows = torch.zeros(64), torch.zeros(64)
    smile[1], brows[3] = 1.0, 1.0
    uniform = _share_in_region(teacher, 1, 0.0, smile)
    regional = _share_in_region(teacher, 1, 0.5, smile)
    assert uniform < 0.08 and regional > 0.2 and regional > 5 * uniform  # measured: 0.04 and 0.28
    both = smile + brows
    assert _share_in_region(teacher, 1, 0.5, both) > 0.1  # measured: 0.15
    weights = teacher.region_weights(torch.stack([smile, 2 * smile, both, torch.zeros(64)]))
    assert (weights > 0).any(-1).all()
    torch.testing.assert_close(weights[1], 2 * weights[0])
    torch.testing.assert_close(weights[0].sum(), torch.tensor(1.0))
    torch.testing.assert_close(weights[3], torch.ones_like(weights[3]), msg="a neutral face: uniform")
    smile_mass = weights[2][weights[0] >= 0.5 * weights[0].max()].sum() / weights[2].sum()
    assert smile_mass > 0.15, "at equal values the smile's region holds its share of the mixture"


def test_region_share_zero_draws_the_uniform_points_as_before(teacher):
    """Without a region share the surface points are the generator's first draws: uniform vertices, then jitter."""
    count = 64
    far = box_points(count, torch.Generator().manual_seed(0)).expand(2, -1, -1)
    points, _ = teacher.samples(labels(), far, count, torch.Generator().manual_seed(5), 0.01, region_share=0.0)
    registered = teacher.register(labels()["betas"])
    vertices = registered.canonical_vertices(labels()["z_id"], labels()["expression"])
    rng = torch.Generator().manual_seed(5)
    pick = torch.randint(vertices.shape[1], (2, count), generator=rng)
    jitter = SURFACE_JITTER * torch.randn(2, count, 3, generator=rng)
    expected = torch.gather(vertices, 1, pick[..., None].expand(-1, -1, 3)) + jitter
    torch.testing.assert_close(points[:, :count], expected, rtol=0, atol=0)
