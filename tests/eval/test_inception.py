"""The FID Inception extractor: parameter names and the FID variant's layers, avg pools without padding, and the
weights loader with its refusals (all on CPU)."""

import pytest
import torch

from aniportrait.eval import EvalError
from aniportrait.eval.inception import FIDInception, load_fid_inception, state_dict_mismatch


def test_inception_names_and_fid_variant():
    full = FIDInception()
    assert full.feature_dim == 2048
    sd = full.state_dict()
    for key in (
        "Conv2d_1a_3x3.conv.weight",
        "Conv2d_1a_3x3.bn.running_mean",
        "Mixed_5b.branch1x1.conv.weight",
        "Mixed_5b.branch_pool.conv.weight",
        "Mixed_6e.branch7x7dbl_5.bn.running_var",
        "Mixed_7c.branch3x3dbl_3b.conv.weight",
        "fc.weight",
    ):
        assert key in sd, key
    assert tuple(sd["fc.weight"].shape) == (1008, 2048)
    assert tuple(sd["Conv2d_1a_3x3.conv.weight"].shape) == (32, 3, 3, 3)
    assert tuple(sd["Mixed_7c.branch_pool.conv.weight"].shape) == (192, 2048, 1, 1)
    assert sum(p.numel() for p in full.parameters()) == 23_850_960  # torchvision Inception3 (no aux) + 1008 classes
    assert full.Mixed_7b.pool == "avg" and full.Mixed_7c.pool == "max"
    # same parameter names at any width
    assert set(FIDInception.tiny().state_dict()) == set(sd)


def test_avg_pools_do_not_count_padding():
    model = FIDInception.tiny()
    block = model.Mixed_5b
    # a constant input: an avg pool that ignores padding keeps the constant at the border
    x = torch.ones(1, block.branch1x1.conv.in_channels, 5, 5)
    from aniportrait.eval.inception import _avg_pool_no_pad

    assert torch.equal(_avg_pool_no_pad(x), x)


def test_weights_roundtrip_and_bad_files(tmp_path):
    full = FIDInception()
    path = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    state = {k: v for k, v in full.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, path)  # like the published file (a plain dict of tensors)
    loaded = load_fid_inception(path)
    for key, value in full.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(loaded.state_dict()[key], value), key
    x = torch.rand(1, 3, 80, 80) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(loaded(x), full(x), atol=1e-6)

    with pytest.raises(EvalError, match="not found"):
        load_fid_inception(tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file at all")
    with pytest.raises(EvalError, match="not a safely loadable"):
        load_fid_inception(junk)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, evil)
    with pytest.raises(EvalError, match="not a safely loadable"):
        load_fid_inception(evil)

    wrong = tmp_path / "wrong.pth"
    torch.save(FIDInception.tiny().state_dict(), wrong)
    with pytest.raises(EvalError, match="mis-shaped"):
        load_fid_inception(wrong)
    renamed = dict(state)
    renamed["AuxLogits.fc.weight"] = renamed.pop("fc.weight")
    torch.save(renamed, wrong)
    with pytest.raises(EvalError, match="missing keys \\(fc.weight\\).*unexpected keys \\(AuxLogits.fc.weight\\)"):
        load_fid_inception(wrong)
    torch.save([1, 2, 3], wrong)
    with pytest.raises(EvalError, match="expected a state_dict"):
        load_fid_inception(wrong)
    assert state_dict_mismatch(full, state) is None
