"""Training states (aniportrait.train.state): the save / load round trip of networks, optimisers, step, RNG and
extra metadata, the documented file layout (no pickle), and the refusals of files that do not fit."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from aniportrait.checkpoint import CheckpointError
from aniportrait.train.state import FORMAT, VERSION, load_saved_extras, load_training_state, save_training_state


class _Net(torch.nn.Module):
    def __init__(self, width: int = 3):
        super().__init__()
        self.fc = torch.nn.Linear(width, 2)
        self.register_buffer("count", torch.zeros((), dtype=torch.int64))


class _CountingSGD(torch.optim.SGD):
    """SGD with momentum that also keeps a non-tensor state entry (scalar state goes to the JSON metadata)."""

    def step(self, closure=None):
        super().step(closure)
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["calls"] = self.state[p].get("calls", 0) + 1


def _setup(seed: int = 0, width: int = 3):
    torch.manual_seed(seed)
    modules = {"G": _Net(width), "D": _Net(width)}
    optimizers = {
        "G": torch.optim.Adam(modules["G"].parameters(), lr=1e-2, betas=(0.0, 0.99)),
        "D": _CountingSGD(modules["D"].parameters(), lr=1e-2, momentum=0.9),
    }
    return modules, optimizers


def _train(modules, optimizers, steps: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(4, modules["G"].fc.in_features, generator=g)
        for name in ("G", "D"):
            optimizers[name].zero_grad()
            modules[name].fc(x).square().mean().backward()
            optimizers[name].step()
            modules[name].count += 1


def _saved(tmp_path, steps: int = 2):
    modules, optimizers = _setup()
    _train(modules, optimizers, steps)
    path = tmp_path / "state.safetensors"
    rng = torch.get_rng_state()
    save_training_state(path, modules=modules, optimizers=optimizers, step=7, rng=rng, extra={"run": "a", "n": [1, 2]})
    return path, modules, optimizers, rng


def test_round_trip_restores_everything(tmp_path):
    path, modules, optimizers, rng = _saved(tmp_path)
    fresh, fresh_opt = _setup(seed=5)
    step, loaded_rng, extra = load_training_state(path, modules=fresh, optimizers=fresh_opt)
    assert step == 7 and extra == {"run": "a", "n": [1, 2]}
    assert torch.equal(loaded_rng, rng)
    for name in modules:
        for key, value in modules[name].state_dict().items():
            assert torch.equal(fresh[name].state_dict()[key], value), (name, key)
        a, b = optimizers[name].state_dict(), fresh_opt[name].state_dict()
        assert json.loads(json.dumps(a["param_groups"])) == b["param_groups"], name  # JSON: tuples come back as lists
        assert a["state"].keys() == b["state"].keys()
        for index, values in a["state"].items():
            assert values.keys() == b["state"][index].keys(), (name, index)
            for key, value in values.items():
                assert torch.equal(torch.as_tensor(b["state"][index][key]), torch.as_tensor(value)), (name, key)
    assert fresh_opt["D"].state_dict()["state"][0]["calls"] == 2  # a scalar state survives as a number


def test_resumed_training_matches_uninterrupted_training(tmp_path):
    path, modules, optimizers, _ = _saved(tmp_path)
    fresh, fresh_opt = _setup(seed=5)
    load_training_state(path, modules=fresh, optimizers=fresh_opt)
    _train(modules, optimizers, 3, seed=9)
    _train(fresh, fresh_opt, 3, seed=9)
    for name in modules:
        for key, value in modules[name].state_dict().items():
            torch.testing.assert_close(fresh[name].state_dict()[key], value, rtol=0, atol=0, msg=f"{name} {key}")


def test_file_layout_is_documented_names_and_json(tmp_path):
    path, modules, optimizers, _ = _saved(tmp_path)
    with safe_open(str(path), framework="pt") as f:
        keys, metadata = set(f.keys()), f.metadata()
    expected = {"rng/torch"}
    for name, module in modules.items():
        expected |= {f"module/{name}/{k}" for k in module.state_dict()}
        for index, values in optimizers[name].state_dict()["state"].items():
            expected |= {f"optim/{name}/{index}/{k}" for k, v in values.items() if isinstance(v, torch.Tensor)}
    assert keys == expected
    assert "optim/G/0/exp_avg" in keys and "optim/D/1/momentum_buffer" in keys
    assert metadata["format"] == FORMAT and metadata["version"] == VERSION and metadata["step"] == "7"
    optim = json.loads(metadata["optimizers"])
    assert optim["D"]["scalars"] == {"0/calls": 2, "1/calls": 2}
    assert optim["G"]["param_groups"][0]["lr"] == pytest.approx(1e-2)
    assert json.loads(metadata["extra"])["run"] == "a"


def test_extra_defaults_to_empty_and_no_optimisers(tmp_path):
    modules, _ = _setup()
    path = tmp_path / "s.safetensors"
    save_training_state(path, modules=modules, optimizers={}, step=0, rng=torch.get_rng_state())
    fresh, _ = _setup(seed=3)
    step, _, extra = load_training_state(path, modules={"G": fresh["G"]}, optimizers={})
    assert step == 0 and extra == {}
    assert torch.equal(fresh["G"].fc.weight, modules["G"].fc.weight)
    assert not torch.equal(fresh["D"].fc.weight, modules["D"].fc.weight)  # only the modules asked for are loaded


def test_overwrite_is_atomic_and_leaves_no_temporary_files(tmp_path):
    path, *_ = _saved(tmp_path)
    modules, optimizers = _setup()
    save_training_state(path, modules=modules, optimizers=optimizers, step=8, rng=torch.get_rng_state())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.safetensors"]
    assert load_training_state(path, modules=_setup()[0], optimizers={})[0] == 8


def test_refuses_a_model_that_does_not_match(tmp_path):
    path, *_ = _saved(tmp_path)
    wider, _ = _setup(width=4)
    with pytest.raises(CheckpointError, match="G does not match this run's model"):
        load_training_state(path, modules={"G": wider["G"]}, optimizers={})
    with pytest.raises(CheckpointError, match="E does not match"):  # strict: a module absent from the file
        load_training_state(path, modules={"E": _Net()}, optimizers={})


def test_refuses_a_missing_optimiser(tmp_path):
    path, *_ = _saved(tmp_path)
    modules, _ = _setup()
    extra = torch.optim.Adam(modules["G"].parameters())
    with pytest.raises(CheckpointError, match="no state for optimiser 'E'"):
        load_training_state(path, modules={}, optimizers={"E": extra})


@pytest.mark.parametrize(
    "metadata",
    [
        {"format": "aniportrait-generator", "version": VERSION},
        {"format": FORMAT, "version": "2"},
        {},
    ],
)
def test_refuses_other_safetensors_files(tmp_path, metadata):
    path = tmp_path / "other.safetensors"
    save_file({"rng/torch": torch.zeros(3, dtype=torch.uint8)}, str(path), metadata=metadata)
    with pytest.raises(CheckpointError, match="not an aniportrait training state"):
        load_training_state(path, modules={}, optimizers={})


def test_refuses_missing_and_unreadable_files(tmp_path):
    with pytest.raises(CheckpointError, match="training state not found"):
        load_training_state(tmp_path / "absent.safetensors", modules={}, optimizers={})
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_training_state(junk, modules={}, optimizers={})


def test_extras_built_later_come_back_by_name_and_stay_out_of_the_main_load(tmp_path):
    """A warm-up's optimiser and tensors (saved under a prefix) are read back by name; the main load ignores them."""
    modules, optimizers = _setup()
    _train(modules, optimizers, 2)
    late = torch.nn.Parameter(torch.randn(3, 4))
    late_opt = torch.optim.Adam([late], lr=0.1)
    late.sum().backward()
    late_opt.step()
    path = tmp_path / "state.safetensors"
    save_training_state(
        path,
        modules=modules,
        optimizers={**optimizers, "warmup.adam": late_opt},
        step=0,
        rng=torch.get_rng_state(),
        others={"warmup.codes": late},
    )
    states, tensors = load_saved_extras(path, "warmup.")
    assert states.keys() == {"adam"} and tensors.keys() == {"codes"}
    assert torch.equal(tensors["codes"], late.detach())
    fresh = torch.nn.Parameter(torch.zeros(3, 4))
    fresh_opt = torch.optim.Adam([fresh], lr=0.1)
    fresh_opt.load_state_dict(states["adam"])
    for key, value in late_opt.state_dict()["state"][0].items():
        assert torch.equal(fresh_opt.state_dict()["state"][0][key], value), key
    fresh_modules, fresh_optimizers = _setup(seed=5)
    assert load_training_state(path, modules=fresh_modules, optimizers=fresh_optimizers)[0] == 0
