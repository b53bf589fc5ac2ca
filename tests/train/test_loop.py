"""The training loop on the tiny config: both stages, exact resume, two-process training, faults, lazy R1, learning
rates, per-discriminator clipping and the reals' grid (the command itself: ``tests/cli/test_train.py``; starting from
another run: ``test_init_from.py``)."""

import json
import math
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from aniportrait.checkpoint import load_generator
from aniportrait.images import resample_grid
from aniportrait.train import losses as losses_module
from aniportrait.train.config import TrainConfig
from aniportrait.train.loop import GENERATOR_FILE, STATE_FILE, Trainer, TrainingError
from aniportrait.train.state import load_training_state
from tests.train.train_helpers import FAST, write_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data") / "ds")


def _states(trainer):
    return {
        **{f"G.{k}": v for k, v in trainer.G.state_dict().items()},
        **{f"G_ema.{k}": v for k, v in trainer.G_ema.state_dict().items()},
        **{f"D.{k}": v for k, v in trainer.D.state_dict().items()},
    }


def test_two_steps_of_each_stage(dataset, tmp_path):
    stage1 = Trainer(TrainConfig(total_steps=2, **FAST), dataset, tmp_path / "s1", progress=False)
    before = {k: v.clone() for k, v in stage1.G.state_dict().items()}
    stage1.run()
    after = stage1.G.state_dict()
    assert not torch.equal(before["deform_net.final_layer.weight"], after["deform_net.final_layer.weight"])
    assert torch.equal(before["sr_net.conv_first.weight"], after["sr_net.conv_first.weight"]), "SR is stage 2"
    stats = [json.loads(line) for line in (tmp_path / "s1" / "stats.jsonl").read_text().splitlines()]
    assert [s["step"] for s in stats] == [1, 2]
    keys = ("d_whole", "d_face", "d_torso", "d_r1", "d_camera", "g_whole", "g_face", "g_torso", "g_camera")
    for key in keys + ("imitation", "exp_smooth", "minimal", "pose_smooth"):
        assert np.isfinite(stats[-1][key]), key
    for name in (STATE_FILE, GENERATOR_FILE, "config.json", "log.txt"):
        assert (tmp_path / "s1" / name).is_file(), name
    assert list((tmp_path / "s1" / "samples").glob("*.png"))

    stage2 = Trainer(
        TrainConfig(total_steps=2, stage=2, **FAST),
        dataset,
        tmp_path / "s2",
        init_from=tmp_path / "s1" / GENERATOR_FILE,
        progress=False,
    )
    start = {k: v.clone() for k, v in stage2.G.state_dict().items()}
    stage2.run()
    end = stage2.G.state_dict()
    assert torch.equal(start["sample_net.output_layer.weight"], end["sample_net.output_layer.weight"]), "frozen"
    assert not torch.equal(start["sr_net.conv_first.weight"], end["sr_net.conv_first.weight"])
    generator, _, _ = load_generator(tmp_path / "s2" / GENERATOR_FILE)
    assert generator.config == stage2.G.config


def test_resume_continues_exactly(dataset, tmp_path):
    straight = Trainer(TrainConfig(total_steps=3, **FAST), dataset, tmp_path / "a", progress=False)
    straight.run()
    first = Trainer(TrainConfig(total_steps=1, **FAST), dataset, tmp_path / "b", progress=False)
    first.run()
    resumed = Trainer(TrainConfig(total_steps=3, **FAST), dataset, tmp_path / "b", progress=False)
    resumed.run(resume=True)
    assert resumed.step == 3
    a, b = _states(straight), _states(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    for name in ("opt_G", "opt_D"):
        sa, sb = getattr(straight, name).state_dict()["state"], getattr(resumed, name).state_dict()["state"]
        for index in sa:
            for k in sa[index]:
                assert torch.equal(torch.as_tensor(sa[index][k]), torch.as_tensor(sb[index][k])), (name, index, k)


def test_save_and_load_give_the_same_state(dataset, tmp_path):
    trainer = Trainer(TrainConfig(total_steps=1, **FAST), dataset, tmp_path / "r", progress=False)
    trainer.run()
    fresh = Trainer(TrainConfig(total_steps=1, **FAST), dataset, tmp_path / "r", progress=False)
    fresh.resume()
    assert fresh.step == 1
    for key, value in _states(trainer).items():
        assert torch.equal(value, _states(fresh)[key]), key


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(dataset, tmp_path, monkeypatch):
    config = TrainConfig(total_steps=4, batch_size=1, impl="ref", checkpoint_every=1, sample_every=1000)
    trainer = Trainer(config, dataset, tmp_path / "nan", progress=False)
    real = losses_module.minimal_deformation
    monkeypatch.setattr(
        losses_module, "minimal_deformation", lambda d, *a: real(d, *a) * (float("nan") if trainer.step >= 2 else 1)
    )
    with pytest.raises(TrainingError, match="non-finite G loss .*minimal.*state.safetensors"):
        trainer.run()
    step, _, _ = load_training_state(
        tmp_path / "nan" / STATE_FILE, modules={"G": trainer.G}, optimizers={"G": trainer.opt_G}
    )
    assert step == 2


def test_interrupted_checkpoint_write_leaves_the_previous_one(dataset, tmp_path, monkeypatch):
    config = TrainConfig(total_steps=2, batch_size=1, impl="ref", checkpoint_every=1, sample_every=1000)
    trainer = Trainer(config, dataset, tmp_path / "kill", progress=False)
    import aniportrait.checkpoint as ckpt

    real_save = ckpt.save_file

    def dying_save(tensors, path, metadata=None):
        if trainer.step == 2:
            with open(path, "wb") as f:
                f.write(b"partial")
            raise KeyboardInterrupt  # the process is killed in the middle of the write
        return real_save(tensors, path, metadata=metadata)

    monkeypatch.setattr(ckpt, "save_file", dying_save)
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    leftovers = [p.name for p in (tmp_path / "kill").iterdir() if p.name.startswith(".tmp")]
    assert leftovers == []
    monkeypatch.setattr(ckpt, "save_file", real_save)
    resumed = Trainer(config, dataset, tmp_path / "kill", progress=False)
    resumed.run(resume=True)
    assert resumed.step == 2


def _ddp_worker(rank, world, port, dataset, run_dir, queue):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        trainer = Trainer(TrainConfig(total_steps=2, **FAST), dataset, run_dir, progress=False)
        trainer.run()
        flat = torch.cat([p.detach().reshape(-1) for p in trainer.G.parameters()])
        queue.put((rank, flat.sum().item(), flat[:50].tolist()))
    finally:
        dist.destroy_process_group()


def test_two_process_training_keeps_replicas_identical(dataset, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    mp.spawn(_ddp_worker, args=(2, port, dataset, tmp_path / "ddp", queue), nprocs=2, join=True)
    results = sorted(queue.get(timeout=10) for _ in range(2))
    assert results[0][1:] == results[1][1:], "ranks diverged: gradients were not averaged"
    assert (tmp_path / "ddp" / STATE_FILE).is_file()


def test_landmark_loss_turns_on_with_a_face_estimator(dataset, tmp_path):
    calls = []

    def estimator(faces):  # a stand-in for Deep3DFaceRecon: differentiable in its input
        calls.append(faces.shape)
        mean = faces.mean(dim=(1, 2, 3))[:, None]
        return mean.expand(-1, 80) * 0.1, mean.expand(-1, 64)

    config = TrainConfig(total_steps=1, **FAST)
    trainer = Trainer(config, dataset, tmp_path / "lm", face_estimator=estimator, progress=False)
    trainer.run()
    stats = json.loads((tmp_path / "lm" / "stats.jsonl").read_text().splitlines()[-1])
    assert calls and np.isfinite(stats["landmark"]) and stats["landmark"] > 0


def test_lazy_r1_runs_every_kth_step_with_k_times_the_weight(dataset, tmp_path):
    lazy = Trainer(TrainConfig(total_steps=1, r1_every=2, **FAST), dataset, tmp_path / "lazy", progress=False)
    every = Trainer(TrainConfig(total_steps=1, **FAST), dataset, tmp_path / "every", progress=False)
    first, second = lazy.train_step(0), lazy.train_step(1)
    assert "d_r1" not in second, "the regularisation phase runs every r1_every-th step only"
    assert first["d_r1"] == pytest.approx(2 * every.train_step(0)["d_r1"], rel=1e-5)
    with pytest.raises(ValueError, match="r1_every"):
        TrainConfig(r1_every=0)


def test_radiance_lr_scale_slows_only_radiance_nets_field_layers(dataset, tmp_path):
    config = TrainConfig(total_steps=1, lr_g=1e-4, radiance_lr_scale=0.1, **FAST)
    trainer = Trainer(config, dataset, tmp_path / "run", progress=False)
    lr_of = {id(p): group["lr"] for group in trainer.opt_G.param_groups for p in group["params"]}
    net = trainer.G.radiance_net
    assert len(lr_of) == len(trainer.g_params)  # every trainable parameter, once
    for name, p in net.named_parameters():
        expected = 1e-4 if name.startswith("mapping_network.") else 1e-5
        assert lr_of[id(p)] == pytest.approx(expected), name
    for module in (trainer.G.sample_net, trainer.G.deform_net):
        assert all(lr_of[id(p)] == pytest.approx(1e-4) for p in module.parameters())
    stage2 = Trainer(
        TrainConfig(total_steps=1, stage=2, radiance_lr_scale=0.1, **FAST), dataset, tmp_path / "s2", progress=False
    )
    assert [g["lr"] for g in stage2.opt_G.param_groups] == [stage2.cfg.lr_sr]  # stage 2 is not affected
    with pytest.raises(ValueError, match="radiance_lr_scale"):
        TrainConfig(radiance_lr_scale=0.0)


def test_each_discriminator_is_clipped_on_its_own(dataset, tmp_path):
    """A huge gradient in one discriminator must not scale the others' steps down."""
    config = TrainConfig(total_steps=1, grad_clip=1.0, **FAST)
    trainer = Trainer(config, dataset, tmp_path / "run", progress=False)
    phase = trainer.phases[0]
    params = phase.params
    loss = sum(1e6 * p.sum() for p in trainer.D.whole.parameters()) + sum(
        1e-3 * p.sum() for p in trainer.D.face.parameters()
    )
    trainer._optimizer_step(loss, phase)
    whole = torch.sqrt(sum(p.grad.pow(2).sum() for p in trainer.D.whole.parameters()))
    face = torch.sqrt(sum(p.grad.pow(2).sum() for p in trainer.D.face.parameters()))
    assert whole.item() == pytest.approx(1.0, rel=1e-4), "clipped to grad_clip"
    expected_face = 1e-3 * math.sqrt(sum(p.numel() for p in trainer.D.face.parameters()))
    assert face.item() == pytest.approx(expected_face, rel=1e-4), "untouched by the other discriminator's norm"
    assert len(params) == sum(1 for _ in trainer.D.parameters())


def test_reals_are_sampled_at_the_render_pixel_centres():
    """A ramp image of any size samples to the ray grid corner to corner (first and last pixels kept)."""
    ramp = torch.linspace(0, 1, 128).expand(1, 3, 128, 128)
    grid = resample_grid(ramp, 32)
    torch.testing.assert_close(grid[0, 0, 0], torch.linspace(0, 1, 32), atol=1e-6, rtol=0)
    assert resample_grid(ramp, 128) is ramp


def test_mean_shape_canonical_registers_the_3dmm_on_the_mean_shape(dataset, tmp_path):
    """The imitation teacher's 3DMM sits where canonical space puts the face: on each identity's shape in the
    release's space, on the mean shape for every identity with ``mean_shape_canonical``."""
    import dataclasses

    from aniportrait.config import TINY

    betas = 1.5 * torch.randn(2, 10, generator=torch.Generator().manual_seed(0))
    landmarks = {}
    for flag in (False, True):
        config = TrainConfig(total_steps=1, generator=dataclasses.replace(TINY, mean_shape_canonical=flag), **FAST)
        teacher = Trainer(config, dataset, tmp_path / str(flag), progress=False).teacher
        landmarks[flag] = [teacher.register(b).canonical_landmarks() for b in (betas, torch.zeros_like(betas))]
    torch.testing.assert_close(landmarks[True][0], landmarks[True][1])
    assert (landmarks[False][0] - landmarks[False][1]).norm(dim=-1).mean() > 1e-3
