"""The warm-ups of short runs: body occupancy, the density, deformation and reconstruction fits (stage 1), the
upsampling fit (stage 2), and the shape regulariser."""

import copy
import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from aniportrait.checkpoint import load_generator
from aniportrait.config import TINY
from aniportrait.data.dataset import PortraitDataset
from aniportrait.images import resample_grid
from aniportrait.train.config import TrainConfig
from aniportrait.train.loop import GENERATOR_FILE, Trainer
from aniportrait.train.warmups import (
    BOX,
    SHELL,
    CanonicalBody,
    WarmupProgress,
    box_points,
    density_prior_loss,
    fit_deformation_to_3dmm,
    fit_density_to_body,
    fit_generator_to_images,
    fit_sr_to_upsampling,
    image_error,
    onto_code_sphere,
    pca_codes,
    scheduled_lr,
    vertex_normals,
    window_corner,
)
from tests.train.train_helpers import FAST, write_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data") / "ds")


def octahedron():
    verts = torch.tensor([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=torch.float64)
    faces = torch.tensor([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])
    return verts[None], faces


def test_vertex_normals_point_outwards_with_unit_length():
    verts, faces = octahedron()
    normals = vertex_normals(verts, faces)
    torch.testing.assert_close(normals, verts)  # each vertex of a centred octahedron: normal = its direction
    assert torch.allclose(normals.norm(dim=-1), torch.ones(1, 6, dtype=torch.float64))


def test_occupancy_is_one_inside_the_body_and_zero_outside(body):
    canonical = CanonicalBody.of(body)
    lo, hi = canonical.verts.min(0).values, canonical.verts.max(0).values
    centre = body.joints(torch.zeros(1, 10), torch.zeros(1, 6, 3))[0, 15]  # the head joint, inside the head
    outside = torch.stack([hi + 0.1, lo - 0.1, torch.stack([lo[0] - 0.1, hi[1] + 0.1, hi[2] + 0.1])])
    occupancy = canonical.occupancy(torch.cat([centre[None], outside]))
    assert occupancy[0] > 0.99
    assert (occupancy[1:] < 0.01).all()


def test_occupancy_flips_across_the_surface(body):
    """Just inside and just outside every 50th vertex (along its normal): 1 and 0."""
    canonical = CanonicalBody.of(body)
    v, n = canonical.verts[::50], canonical.normals[::50]
    step = 0.01
    inside, outside = canonical.occupancy(v - step * n), canonical.occupancy(v + step * n)
    assert (inside > 0.5).float().mean() > 0.95
    assert (outside < 0.5).float().mean() > 0.95


def test_box_points_cover_the_texture_region_and_the_body_part_of_it(body):
    points = box_points(20000, torch.Generator().manual_seed(0))
    lo, hi = torch.tensor(BOX).T
    assert ((points >= lo) & (points <= hi)).all()
    inside = CanonicalBody.of(body).occupancy(points).mean()
    assert 0.05 < inside < 0.6  # the figure fills part of the box, not none or all of it


def test_density_fit_lowers_the_occupancy_error_and_leaves_other_networks(dataset, tmp_path):
    trainer = Trainer(TrainConfig(total_steps=1, **FAST), dataset, tmp_path / "run", progress=False)
    before = {k: v.clone() for k, v in trainer.G.state_dict().items()}
    losses = fit_density_to_body(trainer.G, trainer.canonical_body, trainer.fake_labels, 150, seed=0)
    assert all(math.isfinite(x) for x in losses)
    assert sum(losses[-5:]) / 5 < 0.6 * losses[0], losses[::10]
    after = trainer.G.state_dict()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"radiance_net"}


def test_regulariser_leaves_the_shell_around_the_body_free(body, tmp_path, dataset):
    """Density just outside the body (hair, clothes) costs nothing; inside and far outside it does."""
    trainer = Trainer(TrainConfig(total_steps=1, **FAST), dataset, tmp_path / "run", progress=False)
    canonical = trainer.canonical_body
    labels = trainer.fake_labels(0)
    torch.nn.init.zeros_(trainer.G.radiance_net.output_sigma[-1].weight)
    with torch.no_grad():  # a constant, fully opaque field: alpha ~ 1 everywhere
        for head in trainer.G.radiance_net.output_sigma:
            head.weight.zero_()
            head.bias.fill_(1e4)
    rng = torch.Generator().manual_seed(0)
    loose = density_prior_loss(trainer.G, canonical, labels, rng, points=4096, shell=SHELL)
    rng = torch.Generator().manual_seed(0)
    strict = density_prior_loss(trainer.G, canonical, labels, rng, points=4096, shell=0.0)
    points = box_points(4096, torch.Generator().manual_seed(0))
    signed = canonical.signed_distance(points)
    outside_far, outside_near = (signed >= SHELL).float().mean(), ((signed > 0) & (signed < SHELL)).float().mean()
    assert outside_near > 0.02, "the test needs points in the shell"
    # Opaque everywhere: the error is 1 at every supervised outside point; the shell's points drop out.
    assert strict.item() == pytest.approx(float((signed > 0).float().mean()), abs=0.02)
    assert loose.item() == pytest.approx(float(outside_far / (1 - outside_near)), abs=0.02)


def test_deformation_fit_moves_the_face_and_not_the_rest(dataset, tmp_path):
    """After the warm-up DeformNet opens the mouth (the 3DMM's coefficient 0) near the mouth, and leaves points far
    from the face where they are."""
    config = TrainConfig(total_steps=1, **FAST)
    trainer = Trainer(config, dataset, tmp_path / "run", progress=False)
    before = {k: v.clone() for k, v in trainer.G.state_dict().items()}

    def draw(step):  # mouth-open coefficients over their range (the tiny dataset's labels are all near 0)
        labels = trainer.fake_labels(step)
        labels["expression"] = torch.zeros_like(labels["expression"])
        labels["expression"][:, 0] = 1.5 * torch.rand(
            len(labels["z_id"]), generator=torch.Generator().manual_seed(step)
        )
        return labels

    losses = fit_deformation_to_3dmm(trainer.G, trainer.teacher, draw, 300, seed=0, cfg=config)
    assert all(math.isfinite(x) for x in losses)
    after = trainer.G.state_dict()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"deform_net"}
    # A wide-open mouth on a mean identity: the deformation at the lower lip against that at the chest.
    labels = {"z_id": torch.zeros(1, 80), "betas": torch.zeros(1, 10), "expression": torch.zeros(1, 64)}
    labels["expression"][0, 0] = 1.5
    registered = trainer.teacher.register(labels["betas"])
    target = -registered.canonical_expression_offsets(labels["expression"])[0]
    mouth = target.norm(dim=-1).argmax()
    lip = registered.canonical_vertices(labels["z_id"], labels["expression"])[:, mouth]
    chest = torch.tensor([[0.0, -0.2, 0.0]])  # canonical: the upper chest, well below the face
    freq, phase = trainer.G.deform_net.mapping(torch.cat([labels["z_id"], labels["expression"]], dim=-1))
    with torch.no_grad():
        _, d = trainer.G.deform_net(torch.stack([lip, chest], dim=1), freq, phase)
    assert float(d[0, 0].norm()) > 0.1 * float(target[mouth].norm()), "the mouth opens (19% after 300 steps)"
    assert float(d[0, 1].norm()) < 0.25 * float(d[0, 0].norm()), "the chest stays"


def test_reconstruction_images_are_the_seeded_rows_at_the_render_sizes(dataset, tmp_path):
    config = TrainConfig(total_steps=1, recon_images=3, **FAST)
    trainer = Trainer(config, dataset, tmp_path / "run", progress=False)
    images = trainer.reconstruction_images()
    assert images["image"].shape == (3, 3, trainer.portrait_size, trainer.portrait_size)
    assert images["face"].shape == (3, 3, trainer.face_size, trainer.face_size)
    assert {k: tuple(v.shape[1:]) for k, v in images.items() if k not in ("image", "face")} == {
        "z_id": (80,),
        "betas": (10,),
        "expression": (64,),
        "camera": (2,),
        "pose": (6, 3),
    }
    labels = np.load(dataset / "labels.npz")
    rows = [int(np.flatnonzero((labels["id"] == z.numpy()).all(axis=1))[0]) for z in images["z_id"]]
    assert len(set(rows)) == 3
    for i, row in enumerate(rows):  # each row's image and labels come from one unmirrored dataset item
        item = trainer.dataset.get(row, flip=False)
        torch.testing.assert_close(images["camera"][i], item["camera"])
        torch.testing.assert_close(images["image"][i], item["image"])
    again = Trainer(config, dataset, tmp_path / "again", progress=False).reconstruction_images()
    assert all(torch.equal(images[k], again[k]) for k in images), "the rows are a function of the seed"


def test_reconstruction_fit_lowers_the_image_error_and_trains_the_stage_networks(dataset, tmp_path):
    """An auto-decoder fit of the tiny dataset's four images: the L1 error falls, only the networks stage 1 trains
    move, and the fit is a function of the seed."""
    config = TrainConfig(total_steps=1, recon_lr=1e-3, **FAST)

    def fit(run, steps):
        trainer = Trainer(config, dataset, tmp_path / run, progress=False)
        before = {k: v.clone() for k, v in trainer.G.state_dict().items()}
        errors = fit_generator_to_images(
            trainer.G,
            trainer.g_params,
            lambda labels: trainer.render(trainer.G, labels),
            trainer.reconstruction_images(),
            steps,
            seed=0,
            cfg=config,
            regularisers=lambda labels, out, rng: {},
        )
        after = trainer.G.state_dict()
        changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
        trained = {name for name, m in trainer.G.named_children() if any(p.requires_grad for p in m.parameters())}
        return errors, changed, trained, after

    errors, changed, trained, _ = fit("a", 60)
    assert all(math.isfinite(x) for x in errors)
    assert sum(errors[-10:]) / 10 < 0.8 * sum(errors[:10]) / 10, errors[::10]  # 0.70 measured
    assert changed == trained and {"radiance_net", "sample_net", "deform_net"} <= changed and "sr_net" not in changed
    errors, _, _, weights = fit("b", 5)
    again, _, _, weights_again = fit("c", 5)
    assert again == errors and all(torch.equal(weights[k], weights_again[k]) for k in weights)


def test_recon_ema_ends_the_fit_at_the_moving_average_of_its_iterates(dataset, tmp_path):
    """``recon_ema``: the fit takes the same steps (the same errors), then its parameters take the exponential moving
    average of their values after each step, started from their values before the first; a fit stopped after two of
    four steps and resumed from its saved progress (the averages among its tensors) ends at the same values."""
    decay, steps = 0.6, 4

    def trainer_and_fit(run, **settings):
        config = TrainConfig(total_steps=1, recon_lr=1e-2, recon_codes="prior", **settings, **FAST)
        trainer = Trainer(config, dataset, tmp_path / run, progress=False)
        return trainer, lambda progress=None: fit_recording(trainer, config, steps, "z_noise", progress)[0]

    trainer, fit = trainer_and_fit("plain")
    average = [p.detach().clone() for p in trainer.g_params]
    iterates = []

    def record(done, losses):
        iterates.append([p.detach().clone() for p in trainer.g_params])
        for a, p in zip(average, trainer.g_params):
            a.mul_(decay).add_(p.detach(), alpha=1 - decay)

    plain_errors = fit(WarmupProgress(on_step=record))
    assert len(iterates) == steps
    trainer, fit = trainer_and_fit("ema", recon_ema=decay)
    assert fit() == plain_errors
    for p, a in zip(trainer.g_params, average):
        torch.testing.assert_close(p.detach(), a, rtol=1e-5, atol=1e-7)
    assert max(float((p.detach() - last).abs().max()) for p, last in zip(trainer.g_params, iterates[-1])) > 1e-4
    averaged = [p.detach().clone() for p in trainer.g_params]

    trainer, fit = trainer_and_fit("stopped", recon_ema=decay)
    saved = {}

    def save(done, losses, optimizers, tensors):
        saved["weights"] = copy.deepcopy(trainer.G.state_dict())
        saved["progress"] = {
            "step": done,
            "losses": list(losses),
            "optimizer_states": {k: copy.deepcopy(o.state_dict()) for k, o in optimizers.items()},
            "tensors": {k: t.detach().clone() for k, t in tensors.items()},
        }

    fit(WarmupProgress(save, every=2))
    assert saved["progress"]["step"] == 2 and len(saved["progress"]["tensors"]) == len(trainer.g_params)
    trainer, fit = trainer_and_fit("resumed", recon_ema=decay)
    trainer.G.load_state_dict(saved["weights"])
    assert fit(WarmupProgress(**saved["progress"])) == plain_errors
    assert all(torch.equal(p, a) for p, a in zip(trainer.g_params, averaged))


def test_scheduled_lr_is_constant_or_a_half_cosine_to_zero():
    assert [scheduled_lr(0.1, s, 4, "constant") for s in range(4)] == [0.1] * 4
    cosine = [scheduled_lr(0.1, s, 4, "cosine") for s in range(5)]
    expected = [0.1, 0.1 * (1 + 2**-0.5) / 2, 0.05, 0.1 * (1 - 2**-0.5) / 2, 0.0]
    assert all(abs(a - b) < 1e-12 for a, b in zip(cosine, expected))
    with pytest.raises(ValueError, match="unknown"):
        scheduled_lr(0.1, 0, 4, "linear")


def test_the_cosine_schedule_sets_each_step_of_the_reconstruction_fit(dataset, tmp_path, monkeypatch):
    """``recon_lr_schedule="cosine"``: the generator's Adam steps at ``scheduled_lr`` of its step; the codes' Adam
    (learned codes) keeps ``recon_code_lr``."""
    seen = []
    step = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        seen.append([group["lr"] for group in self.param_groups])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    config = TrainConfig(total_steps=1, recon_lr=1e-3, recon_lr_schedule="cosine", recon_code_lr=0.3, **FAST)
    fit_recording(Trainer(config, dataset, tmp_path / "run", progress=False), config, 3, "z_noise")
    generator_lrs = [lrs for lrs in seen if lrs != [0.3]]
    assert len(generator_lrs) == 3 and seen.count([0.3]) == 3
    for s, lrs in enumerate(generator_lrs):
        assert lrs == [scheduled_lr(1e-3, s, 3, "cosine")] * len(lrs)


def fit_recording(trainer, config, steps, key, progress=None):
    """The reconstruction fit of ``trainer`` (seed 0, no regularisers; ``progress`` as the fit takes it): its errors,
    ``labels.get(key)`` of each render, each render's output (detached) and the images fitted."""
    seen, outputs = [], []

    def render(labels):
        seen.append(labels.get(key))
        out = trainer.render(trainer.G, labels)
        outputs.append({name: value.detach() for name, value in out.items()})
        return out

    images = trainer.reconstruction_images()
    errors = fit_generator_to_images(
        trainer.G,
        trainer.g_params,
        render,
        images,
        steps,
        seed=0,
        cfg=config,
        regularisers=lambda *a: {},
        progress=progress,
    )
    return errors, seen, outputs, images


def test_reconstruction_with_prior_codes_gives_each_render_fresh_noise(dataset, tmp_path):
    """``recon_codes="prior"``: no code is learned; every render gets a new N(0, I) noise (as a render at inference
    does), drawn from the seed, and the image error still falls (the labels are all the generator reads)."""
    config = TrainConfig(total_steps=1, recon_lr=1e-3, recon_codes="prior", **FAST)

    def fit(run, steps):
        trainer = Trainer(config, dataset, tmp_path / run, progress=False)
        errors, noises = fit_recording(trainer, config, steps, "z_noise")[:2]
        return errors, torch.stack([noise.detach().clone() for noise in noises])

    errors, noises = fit("a", 60)
    assert sum(errors[-10:]) / 10 < 0.8 * sum(errors[:10]) / 10, errors[::10]
    flat = noises.flatten(0, 1)  # [steps * batch, dim]: no two renders share a noise
    assert torch.cdist(flat, flat).add(torch.eye(len(flat)) * 1e9).min() > 1
    assert abs(float(flat.mean())) < 0.05 and abs(float(flat.std()) - 1) < 0.05
    again, noises_again = fit("b", 3)
    assert torch.equal(noises_again, noises[:3]) and again == errors[:3]


def test_texel_jitter_gives_each_reconstruction_render_its_own_texel_offset(dataset, tmp_path):
    """``texel_jitter``: every render of the fit gets a texel offset in [-0.5, 0.5]^2, drawn from the seed (a rerun
    draws the same ones); the GAN's fake labels carry one too; without it no render gets one."""
    config = TrainConfig(total_steps=1, recon_codes="prior", texel_jitter=True, **FAST)

    def offsets(run, steps, cfg):
        trainer = Trainer(cfg, dataset, tmp_path / run, progress=False)
        return fit_recording(trainer, cfg, steps, "texel_offset")[1], trainer

    seen, trainer = offsets("a", 4, config)
    drawn = torch.stack(seen)
    assert drawn.shape == (4, 2) and drawn.abs().max() <= 0.5 and len({tuple(o.tolist()) for o in drawn}) == 4
    again, _ = offsets("b", 4, config)
    assert torch.equal(torch.stack(again), drawn)
    fake = trainer.fake_labels(3)["texel_offset"]
    assert fake.shape == (2,) and fake.abs().max() <= 0.5
    plain, plain_trainer = offsets("c", 2, TrainConfig(total_steps=1, recon_codes="prior", **FAST))
    assert plain == [None, None] and "texel_offset" not in plain_trainer.fake_labels(3)


def test_the_face_weight_scales_the_face_views_share_of_the_error(dataset, tmp_path):
    """The reconstruction error is the portrait's L1 plus ``recon_face_weight`` times the face view's."""
    first = {}
    for weight in (0.0, 1.0, 3.0):
        config = TrainConfig(total_steps=1, recon_codes="prior", recon_face_weight=weight, **FAST)
        trainer = Trainer(config, dataset, tmp_path / f"w{weight}", progress=False)
        first[weight] = fit_generator_to_images(
            trainer.G,
            trainer.g_params,
            lambda labels, trainer=trainer: trainer.render(trainer.G, labels),
            trainer.reconstruction_images(),
            1,
            seed=0,
            cfg=config,
            regularisers=lambda labels, out, rng: {},
        )[0]
    face = first[1.0] - first[0.0]  # the same seed: the same first renders
    assert face > 0.01 and abs(first[3.0] - first[0.0] - 3 * face) < 1e-4 * (1 + first[3.0])


def test_the_image_gradient_term_charges_a_blurred_edge_and_not_a_constant_offset():
    """``image_error``: the L1 plus the weight times the mean L1 of the pixel differences down and along (by hand on
    a 2x3 image); an offset constant over the image pays only its L1; a blurred copy of a thin line pays the
    gradient term, and the term grows with the weight while the L1 part stays."""
    output = torch.tensor([[[[0.0, 1.0, 3.0], [2.0, 2.0, 0.0]]]])
    target = torch.zeros_like(output, dtype=torch.float64)
    down = (2 + 1 + 3) / 3
    along = (1 + 2 + 0 + 2) / 4
    assert abs(float(image_error(output, target, 2.0)) - (8 / 6 + 2.0 * 0.5 * (down + along))) < 1e-6
    assert float(image_error(output, target)) == float(image_error(output, target, 0.0))
    assert abs(float(image_error(output, target)) - 8 / 6) < 1e-6

    line = -torch.ones(2, 3, 16, 16)
    line[:, :, 7:9, :] = 1.0  # a bright line two pixels thick
    offset = line + 0.3
    assert abs(float(image_error(offset, line, 5.0)) - 0.3) < 1e-6
    kernel = torch.full((3, 1, 5, 1), 0.2)
    blurred = torch.nn.functional.conv2d(line, kernel, padding=(2, 0), groups=3)
    plain = float(image_error(blurred, line))
    assert 0.05 < plain < 0.5
    with_gradient = [float(image_error(blurred, line, w)) - plain for w in (1.0, 4.0)]
    assert with_gradient[0] > 0.05 and abs(with_gradient[1] - 4 * with_gradient[0]) < 1e-5


def test_the_gradient_weight_adds_each_views_gradient_term_to_the_fit(dataset, tmp_path):
    """``recon_gradient_weight``: the fit's error is each view's ``image_error`` with that weight (the portrait's
    plus ``recon_face_weight`` times the face view's); the same seed draws the same first renders."""

    def fit(run, **settings):
        config = TrainConfig(total_steps=1, recon_codes="prior", recon_face_weight=2.0, **settings, **FAST)
        return fit_recording(Trainer(config, dataset, tmp_path / run, progress=False), config, 1, "z_noise")

    plain, noise, outputs, images = fit("plain")
    errors, noise_again, _, _ = fit("gradient", recon_gradient_weight=3.0)
    assert torch.equal(noise[0], noise_again[0])
    batch = outputs[0]["image"].shape[0]
    rows = torch.randint(images["image"].shape[0], (batch,), generator=torch.Generator().manual_seed(0 * 100_057))
    terms = [
        float(
            image_error(outputs[0][view], images[view][rows], 1.0) - image_error(outputs[0][view], images[view][rows])
        )
        for view in ("image", "face")
    ]
    assert min(terms) > 1e-3
    expected = plain[0] + 3.0 * (terms[0] + 2.0 * terms[1])
    assert abs(errors[0] - expected) < 1e-4 * (1 + errors[0])


def test_a_full_size_window_adds_its_error_against_the_image_at_full_size(dataset, tmp_path):
    """``recon_window``: each render of the fit gets a window of the full-size frame drawn from the seed, inside the
    frame; the error adds ``recon_window_weight`` times the window's L1 against that window of the image at full
    size (the dataset's images resampled to the frame's side), and a rerun draws the same windows."""
    generator = dataclasses.replace(TINY, field_hr_textures=True)
    hr = generator.hr_img_size

    def first_error(run, **settings):
        config = TrainConfig(total_steps=1, recon_codes="prior", generator=generator, **settings, **FAST)
        return fit_recording(Trainer(config, dataset, tmp_path / run, progress=False), config, 3, "hr_window")

    plain, none, _, images = first_error("plain")
    assert none == [None] * 3 and "full" not in images
    errors, windows, outputs, images = first_error("window", recon_window=12, recon_window_weight=2.0)
    assert images["full"].shape == (images["image"].shape[0], 3, hr, hr)
    row = int(np.flatnonzero((np.load(dataset / "labels.npz")["id"] == images["z_id"][0].numpy()).all(axis=1))[0])
    full = resample_grid(PortraitDataset(dataset).get(row, flip=False)["image"][None], hr)[0]
    assert float((images["full"][0].float() - full).abs().max()) < 1e-3  # half precision
    assert all(side == 12 and 0 <= top <= hr - 12 and 0 <= left <= hr - 12 for top, left, side in windows)
    assert len(set(windows)) == 3
    top, left, side = windows[0]
    rows = torch.randint(images["image"].shape[0], (1,), generator=torch.Generator().manual_seed(0 * 100_057))
    target = images["full"][rows, :, top : top + side, left : left + side].float()
    window_error = float((outputs[0]["window"].detach() - target).abs().mean())
    assert window_error > 0.01
    assert abs(errors[0] - plain[0] - 2.0 * window_error) < 1e-4 * (1 + errors[0])
    assert first_error("again", recon_window=12, recon_window_weight=2.0)[1] == windows
    _, on_figure, _, images = first_error("figure", recon_window=12, recon_window_on="figure")
    assert on_figure != windows
    for step, (top, left, side) in enumerate(on_figure):  # each window holds figure pixels of its batch
        rng = torch.Generator().manual_seed(0 * 100_057 + step)
        rows = torch.randint(images["image"].shape[0], (1,), generator=rng)
        assert (images["full"][rows, :, top : top + side, left : left + side].float() < 0.97).any()


def test_the_full_size_face_adds_its_error_against_the_face_image(dataset, tmp_path):
    """``recon_hr_face_weight``: every render of the fit also renders stage 2's face view (``hr_face``) and the error
    adds the weight times its L1 against the dataset's face image at that side."""
    generator = dataclasses.replace(TINY, field_hr_textures=True)

    def fit(run, **settings):
        config = TrainConfig(total_steps=1, recon_codes="prior", generator=generator, **settings, **FAST)
        trainer = Trainer(config, dataset, tmp_path / run, progress=False)
        return *fit_recording(trainer, config, 1, "hr_face_size"), trainer

    plain, none, plain_out, images, _ = fit("plain")
    assert none == [None] and "hr_face" not in images and "hr_face" not in plain_out[0]
    errors, sizes, outputs, images, trainer = fit("face", recon_hr_face_weight=3.0)
    side = trainer.G.default_face_size(2)
    assert sizes == [side] and outputs[0]["hr_face"].shape == (1, 3, side, side)
    row = int(np.flatnonzero((np.load(dataset / "labels.npz")["id"] == images["z_id"][0].numpy()).all(axis=1))[0])
    face = resample_grid(PortraitDataset(dataset).get(row, flip=False)["face"][None], side)[0]
    assert float((images["hr_face"][0].float() - face).abs().max()) < 1e-3  # half precision
    rows = torch.randint(images["image"].shape[0], (1,), generator=torch.Generator().manual_seed(0))
    face_error = float((outputs[0]["hr_face"].detach() - images["hr_face"][rows].float()).abs().mean())
    assert face_error > 0.01
    assert abs(errors[0] - plain[0] - 3.0 * face_error) < 1e-4 * (1 + errors[0])


def test_figure_windows_are_drawn_in_proportion_to_the_figure_they_hold():
    """``recon_window_on="figure"``: a corner's chance is the figure's share of its window's pixels over the batch, so
    no window of background alone is drawn; ``"frame"`` draws corners uniformly; the same generator state, the same
    corner; an all-white batch falls back to uniform corners."""
    full = torch.ones(2, 3, 40, 40)
    full[0, :, 4:12, 30:38] = -0.2  # one row's figure in the top-right corner
    full[1, 1, 4:12, 30:38] = 0.5  # the other's in the same place, one channel only
    side, corners = 8, 33
    figure = torch.zeros(40, 40)
    figure[4:12, 30:38] = 1
    share = torch.nn.functional.avg_pool2d(figure[None, None], side, stride=1)[0, 0]
    counts = torch.zeros(corners, corners)
    rng = torch.Generator().manual_seed(3)
    draws = 4000
    for _ in range(draws):
        top, left = window_corner(full, side, "figure", rng)
        counts[top, left] += 1
    assert counts[share == 0].sum() == 0  # never a window of background alone
    expected = share / share.sum() * draws
    assert float((counts - expected).abs().sum()) / draws < 0.2  # total variation against the shares
    assert float(counts[4, 30]) > 2 * float(counts[share > 0].mean())  # the window holding all of the figure leads
    again = torch.Generator().manual_seed(3)
    assert window_corner(full, side, "figure", again) == window_corner(
        full, side, "figure", torch.Generator().manual_seed(3)
    )
    uniform = [window_corner(torch.ones(1, 3, 40, 40), side, "figure", rng) for _ in range(2000)]
    assert len(set(uniform)) > 600 and all(0 <= t < corners and 0 <= c < corners for t, c in uniform)
    frame = [window_corner(full, side, "frame", rng) for _ in range(2000)]
    assert len(set(frame)) > 600 and np.mean([t for t, _ in frame]) == pytest.approx(16, abs=1)


@pytest.mark.parametrize("setting", ["face_textures", "face_at_lookup"])
def test_face_settings_reach_the_face_view_of_every_training_render(dataset, tmp_path, setting):
    """``face_textures`` (the face read from the fine textures) and ``face_at_lookup`` (the field evaluated where the
    lookups show it) reach the trainer's renders (render_train's settings of the same names), whose face differs
    from the face view that evaluates the field at its own intersections."""
    generator = dataclasses.replace(TINY, field_hr_textures=True)
    faces = {}
    for flag in (False, True):
        config = TrainConfig(total_steps=1, generator=generator, **{setting: flag}, **FAST)
        trainer = Trainer(config, dataset, tmp_path / f"run{flag}", progress=False)
        labels = trainer.fake_labels(0)
        with torch.no_grad():
            faces[flag] = trainer.render(trainer.G, labels)["face"]
            expected = trainer.G.render_train(
                trainer.body,
                *(labels[k] for k in ("z_id", "z_noise", "betas", "expression", "camera", "pose")),
                face_size=trainer.face_size,
                impl="ref",
                **{setting: flag},
            )["face"]
        assert torch.equal(faces[flag], expected)
    assert float((faces[True] - faces[False]).abs().max()) > 1e-3


def test_pca_codes_are_whitened_components_that_tell_the_images_apart():
    g = torch.Generator().manual_seed(0)
    n, dim = 40, 16
    # Images that differ by colour (a few modes) and by noise.
    colour = 1.6 * torch.rand(n, 3, 1, 1, generator=g) - 0.8
    images = {
        "image": (colour + 0.05 * torch.randn(n, 3, 32, 32, generator=g)).clamp(-1, 1),
        "face": (colour.flip(1) + 0.05 * torch.randn(n, 3, 16, 16, generator=g)).clamp(-1, 1),
    }
    fill = torch.randn(n, dim, generator=g)
    codes = pca_codes(images, dim, fill)
    assert codes.shape == (n, dim) and codes.dtype == torch.float32
    torch.testing.assert_close(codes.mean(0), torch.zeros(dim), atol=1e-4, rtol=0)
    cov = codes.T @ codes / (n - 1)
    torch.testing.assert_close(cov, torch.eye(dim), atol=1e-4, rtol=0)  # 16 < rank: every column a component
    # The first components carry the colours: a linear read-out of the colour from the first 3 codes is near exact.
    first = codes[:, :3].double()
    target = colour.flatten(1).double()
    target = target - target.mean(0)
    fit = first @ torch.linalg.lstsq(first, target).solution
    assert float((fit - target).norm() / target.norm()) < 0.1
    # A function of the images: rows in another order give the same codes in that order, whatever the fill.
    perm = torch.randperm(n, generator=g)
    again = pca_codes({k: v[perm] for k, v in images.items()}, dim, torch.randn(n, dim, generator=g))
    torch.testing.assert_close(again, codes[perm], atol=1e-4, rtol=0)


def test_onto_code_sphere_scales_each_row_to_the_norm_of_a_gaussian_draw():
    codes = torch.tensor([[3.0, 4.0], [0.0, -0.5]])
    out = onto_code_sphere(codes)
    torch.testing.assert_close(out.norm(dim=1), torch.full((2,), math.sqrt(2.0)))
    torch.testing.assert_close(out / out.norm(dim=1, keepdim=True), codes / codes.norm(dim=1, keepdim=True))
    assert torch.equal(onto_code_sphere(torch.zeros(1, 2)), torch.zeros(1, 2)), "a zero row stays finite"


def test_pca_codes_keep_the_fill_beyond_the_rank_of_the_images():
    images = {"image": torch.zeros(3, 3, 8, 8), "face": torch.zeros(3, 3, 8, 8)}
    images["image"][1] = 0.5
    images["image"][2] = -0.5  # rank 1 after centring
    fill = torch.arange(12.0).reshape(3, 4)
    codes = pca_codes(images, 4, fill)
    torch.testing.assert_close(codes[:, 1:], fill[:, 1:])
    assert abs(float(codes[0, 0])) < 1e-6 and codes[1, 0] * codes[2, 0] < 0
    torch.testing.assert_close(codes[:, 0].square().sum() / 2, torch.tensor(1.0))
    assert torch.equal(pca_codes({k: v[:1] for k, v in images.items()}, 4, fill[:1]), fill[:1])


def test_stage_two_reconstruction_fits_the_full_resolution_images_with_super_resolution_only(dataset, tmp_path):
    """Stage 2's reconstruction (``sr_recon_steps``): renders at the high-resolution sizes, the L1 error falls, and
    only the networks stage 2 trains move (the stage-1 generator stays frozen)."""
    config = TrainConfig(total_steps=1, stage=2, recon_lr=5e-3, **FAST)
    trainer = Trainer(config, dataset, tmp_path / "run", progress=False)
    images = trainer.reconstruction_images()
    assert images["image"].shape[-1] == 4 * trainer.G.config.lr_img_size
    # The tiny dataset's pixels are random (a fit could not beat their mean): one flat colour per image instead.
    colours = torch.tensor([[0.8, -0.2, -0.6], [-0.7, 0.5, 0.1], [0.2, 0.7, -0.8], [-0.4, -0.6, 0.6]])
    for key in ("image", "face"):
        images[key] = colours[:, :, None, None].expand_as(images[key]).clone()
    before = {k: v.clone() for k, v in trainer.G.state_dict().items()}
    errors = fit_generator_to_images(
        trainer.G,
        trainer.g_params,
        lambda labels: trainer.render(trainer.G, labels),
        images,
        120,
        seed=0,
        cfg=config,
        regularisers=lambda labels, out, rng: {},
    )
    assert all(math.isfinite(x) for x in errors)
    assert sum(errors[-10:]) < 0.5 * sum(errors[:10]), errors[::10]  # 0.26 measured
    after = trainer.G.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("sr_net.", "radiance_net.output_feature.")) for k in changed), changed
    assert any(k.startswith("sr_net.") for k in changed)


def test_stage_two_run_logs_its_warm_ups_in_order(dataset, tmp_path):
    config = TrainConfig(total_steps=1, stage=2, sr_prior_steps=2, sr_recon_steps=2, recon_steps=5, **FAST)
    Trainer(config, dataset, tmp_path / "run", progress=False).run()
    log = (tmp_path / "run" / "log.txt").read_text()
    upsampling, recon = log.index("upsampling warm-up, texture"), log.index("reconstruction warm-up on 4 images")
    assert upsampling < recon and log.count("reconstruction warm-up") == 1, "recon_steps is stage 1's only"
    assert "in 2 steps" in log[recon:].splitlines()[0]


def test_upsampling_fit_trains_super_resolution_only(dataset, tmp_path):
    trainer = Trainer(TrainConfig(total_steps=1, stage=2, **FAST), dataset, tmp_path / "run", progress=False)
    before = {k: v.clone() for k, v in trainer.G.state_dict().items()}
    losses = fit_sr_to_upsampling(trainer.G, trainer.fake_labels, 50, impl="ref")
    assert sum(losses[-5:]) / 5 < 0.6 * losses[0], losses[::5]
    after = trainer.G.state_dict()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"sr_net"}


def test_run_starts_with_the_warm_up_and_the_ema_takes_it(dataset, tmp_path):
    config = TrainConfig(
        total_steps=1,
        shape_prior_steps=3,
        recon_steps=2,
        recon_code_init="pca",
        recon_code_sphere=True,
        shape_prior_lambda=2.0,
        train_smoother=False,
        **FAST,
    )
    trainer = Trainer(config, dataset, tmp_path / "run", progress=False)
    assert not any(p is q for p in trainer.g_params for q in trainer.G.smoother.parameters())
    smoother = {k: v.clone() for k, v in trainer.G.smoother.state_dict().items()}
    trainer.run()
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "shape warm-up, occupancy loss" in log and "reconstruction warm-up on 4 images, L1" in log
    # Each warm-up's loss curve: every log_every-th step (every step here) and the last.
    curves = [json.loads(line) for line in (tmp_path / "run" / "warmups.jsonl").read_text().splitlines()]
    shape, recon = "shape warm-up", "reconstruction warm-up on 4 images"
    assert [(c["warmup"], c["step"]) for c in curves] == [(shape, 0), (shape, 1), (shape, 2), (recon, 0), (recon, 1)]
    assert all(math.isfinite(c["loss"]) and c["loss"] > 0 for c in curves)
    stats = json.loads((tmp_path / "run" / "stats.jsonl").read_text().splitlines()[-1])
    assert math.isfinite(stats["shape"]) and stats["shape"] > 0, "the occupancy loss stays on as a regulariser"
    for k, v in trainer.G.smoother.state_dict().items():
        assert torch.equal(v, smoother[k]), "a frozen smoother stays as initialised"
    # The checkpoint carries the dataset's [id, betas] rows: renders draw identities the model was trained on.
    generator, _, _ = load_generator(tmp_path / "run" / GENERATOR_FILE)
    labels = np.load(dataset / "labels.npz")
    expected = torch.from_numpy(np.concatenate([labels["id"], labels["betas"]], axis=1))
    torch.testing.assert_close(generator.id_bank, expected)


def test_progress_saves_every_few_steps_and_a_resumed_fit_continues_exactly(dataset, tmp_path):
    """Two steps, saved; a new generator given the saved weights and progress takes the last two: the same result as
    four steps in one go. Saves come every `every` steps but never after the last."""
    trainer = Trainer(TrainConfig(total_steps=1, **FAST), dataset, tmp_path / "run", progress=False)
    G, body, draw = trainer.G, trainer.canonical_body, trainer.fake_labels
    start = {k: v.clone() for k, v in G.state_dict().items()}
    whole = fit_density_to_body(G, body, draw, 4, seed=0)
    expected = {k: v.clone() for k, v in G.state_dict().items()}

    G.load_state_dict(start)
    saves = []

    def save(done, losses, optimizers, tensors):
        saves.append(done)
        if done == 2:
            saved["weights"] = {k: v.clone() for k, v in G.state_dict().items()}
            state = copy.deepcopy(optimizers["adam"].state_dict())  # Adam updates its state in place
            saved["progress"] = {"step": done, "losses": list(losses), "optimizer_states": state}

    saved = {}
    fit_density_to_body(G, body, draw, 4, seed=0, progress=WarmupProgress(save, every=2))
    assert saves == [2]
    G.load_state_dict(saved["weights"])
    progress = saved["progress"]
    resumed = WarmupProgress(
        step=progress["step"], losses=progress["losses"], optimizer_states={"adam": progress["optimizer_states"]}
    )
    assert fit_density_to_body(G, body, draw, 4, seed=0, progress=resumed) == whole
    assert all(torch.equal(G.state_dict()[k], expected[k]) for k in expected)


def test_progress_refuses_saved_states_that_do_not_fit():
    net = torch.nn.Linear(2, 2)
    optimizer = torch.optim.Adam(net.parameters())
    with pytest.raises(ValueError, match="lacks adam"):
        WarmupProgress(step=1, losses=[0.5]).begin({"adam": optimizer})
    with pytest.raises(ValueError, match="lacks its losses"):
        WarmupProgress(step=2, losses=[0.5], optimizer_states={"adam": optimizer.state_dict()}).begin(
            {"adam": optimizer}
        )
    codes = torch.zeros(3, 4)
    with pytest.raises(ValueError, match="shape"):
        WarmupProgress(
            step=1,
            losses=[0.5],
            optimizer_states={"adam": optimizer.state_dict()},
            tensors={"codes": torch.zeros(2, 4)},
        ).begin({"adam": optimizer}, {"codes": codes})
