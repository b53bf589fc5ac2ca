"""Starting a run from another: the generator, its EMA and the discriminators (progressively across stages)."""

import pytest
import torch

from aniportrait.checkpoint import load_generator
from aniportrait.train.config import TrainConfig
from aniportrait.train.loop import GENERATOR_FILE, STATE_FILE, Trainer
from aniportrait.train.state import load_training_state
from tests.train.train_helpers import FAST, write_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data") / "ds", res=64, face=32)


@pytest.fixture(scope="module")
def stage1(dataset, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "s1"
    Trainer(TrainConfig(total_steps=2, **FAST), dataset, run, progress=False).run()
    return run


def test_same_stage_continues_generator_ema_discriminator_and_its_optimiser(stage1, dataset, tmp_path):
    follow = Trainer(TrainConfig(total_steps=1, **FAST), dataset, tmp_path / "next", init_from=stage1, progress=False)
    probe = Trainer(TrainConfig(total_steps=2, **FAST), dataset, tmp_path / "probe", progress=False)
    load_training_state(stage1 / STATE_FILE, modules=probe._modules(), optimizers={"G": probe.opt_G, "D": probe.opt_D})
    for name in ("G", "G_ema", "D"):
        for (key, a), b in zip(getattr(follow, name).state_dict().items(), getattr(probe, name).state_dict().values()):
            assert torch.equal(a, b), (name, key)
    for index, state in probe.opt_D.state_dict()["state"].items():
        for key, value in state.items():
            assert torch.equal(torch.as_tensor(follow.opt_D.state_dict()["state"][index][key]), torch.as_tensor(value))
    assert follow.step == 0, "a new run: its own step count"


def test_stage2_starts_from_the_stage1_ema_and_its_discriminator_blocks(stage1, dataset, tmp_path):
    follow = Trainer(
        TrainConfig(total_steps=1, stage=2, **FAST), dataset, tmp_path / "s2", init_from=stage1, progress=False
    )
    ema, _, _ = load_generator(stage1 / GENERATOR_FILE)
    for key, value in ema.state_dict().items():
        assert torch.equal(follow.G.state_dict()[key], value), key
    probe = Trainer(TrainConfig(total_steps=1, **FAST), dataset, tmp_path / "p", progress=False)
    load_training_state(stage1 / STATE_FILE, modules={"D": probe.D}, optimizers={})
    assert torch.equal(follow.D.face.final_layer.weight, probe.D.face.final_layer.weight)
    assert len(follow.D.whole.layers) > len(probe.D.whole.layers)
    assert torch.equal(follow.D.whole.layers[-1].conv1.conv.weight, probe.D.whole.layers[-1].conv1.conv.weight)
    assert not follow.opt_D.state_dict()["state"], "another discriminator: a fresh optimiser"
    follow.run()
    assert "discriminator tensors" in (tmp_path / "s2" / "log.txt").read_text()


def test_a_same_stage_start_keeps_the_source_ema_through_the_warm_up_phase(stage1, dataset, tmp_path):
    """Without warm-ups the loaded EMA survives the start of the run (it used to be overwritten by the raw
    generator); with a warm-up the EMA starts from the fitted generator."""
    follow = Trainer(TrainConfig(total_steps=1, **FAST), dataset, tmp_path / "a", init_from=stage1, progress=False)
    source = {k: v.clone() for k, v in follow.G_ema.state_dict().items()}
    assert any(not torch.equal(v, follow.G.state_dict()[k]) for k, v in source.items()), "EMA and G must differ"
    follow._warm_up()
    for key, value in follow.G_ema.state_dict().items():
        assert torch.equal(value, source[key]), key
    warmed = Trainer(
        TrainConfig(total_steps=1, shape_prior_steps=1, **FAST),
        dataset,
        tmp_path / "b",
        init_from=stage1,
        progress=False,
    )
    (tmp_path / "b").mkdir()  # run() makes the folder; the warm-up logs into it
    warmed._warm_up()
    for key, value in warmed.G_ema.state_dict().items():
        assert torch.equal(value, warmed.G.state_dict()[key]), key


def test_a_run_with_colour_modulation_continues_a_run_without_it(stage1, dataset, tmp_path):
    """The source's weights load and the new modulation starts at zero (the source's field); another change of the
    generator is still refused."""
    import dataclasses

    from aniportrait.config import TINY
    from aniportrait.train.run_folder import RunFolderError

    modulated = dataclasses.replace(TINY, color_modulation=True)
    config = TrainConfig(total_steps=1, generator=modulated, **FAST)
    for source in (stage1, stage1 / GENERATOR_FILE):
        follow = Trainer(config, dataset, tmp_path / "m", init_from=source, progress=False)
        ema, _, _ = load_generator(stage1 / GENERATOR_FILE)
        state = follow.G_ema.state_dict() if source == stage1 else follow.G.state_dict()
        for key, value in ema.state_dict().items():
            assert torch.equal(state[key], value), key
        assert not follow.G.radiance_net.color_modulation.weight.any()
    # Not the other way: a run without modulation cannot drop a source's.
    modulated_run = tmp_path / "m2"
    Trainer(config, dataset, modulated_run, init_from=stage1, progress=False).run()
    for source in (modulated_run, modulated_run / GENERATOR_FILE):
        with pytest.raises(RunFolderError, match="differ"):
            Trainer(TrainConfig(total_steps=1, **FAST), dataset, tmp_path / "p", init_from=source, progress=False)
    wider = TrainConfig(total_steps=1, generator=dataclasses.replace(modulated, hidden_dim=TINY.hidden_dim + 8), **FAST)
    for source in (stage1, stage1 / GENERATOR_FILE):
        with pytest.raises(RunFolderError, match="differ"):
            Trainer(wider, dataset, tmp_path / "w", init_from=source, progress=False)


def test_a_continuation_logs_the_generator_settings_it_changes(stage1, dataset, tmp_path):
    """Settings without weights of their own (the gate's slope, the textures' source) are the new run's, from a
    training state or a generator file alike, and the run's log names each one that changed."""
    import dataclasses

    from aniportrait.config import TINY

    changed = dataclasses.replace(TINY, expression_gate_slope=0.5, field_hr_textures=True)
    for source in (stage1, stage1 / GENERATOR_FILE):
        run = tmp_path / f"c_{source.name}"
        config = TrainConfig(total_steps=1, generator=changed, **FAST)
        Trainer(config, dataset, run, init_from=source, progress=False).run()
        log = (run / "log.txt").read_text()
        assert "generator settings changed: field_hr_textures False -> True, expression_gate_slope 0.0 -> 0.5" in log
    same = tmp_path / "s"
    Trainer(TrainConfig(total_steps=1, **FAST), dataset, same, init_from=stage1, progress=False).run()
    assert "init from" in (same / "log.txt").read_text() and "settings changed" not in (same / "log.txt").read_text()
