"""The FID Inception-v3 feature extractor, written from the architecture.

FID and KID are defined on the 2048-d pool features of the TensorFlow Inception-v3 graph of 2015-12-05 (the network
of the original FID code). pytorch-fid ported its weights to a PyTorch ``state_dict``:

    file:  pt_inception-2015-12-05-6726825d.pth  (about 91 MB)
    from:  https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth
           (pytorch-fid downloads it to ~/.cache/torch/hub/checkpoints/ on first use; any copy of the file works)

The user supplies that file (we never download anything); :func:`load_fid_inception` loads it with
``torch.load(path, weights_only=True)`` and ``load_state_dict(strict=True)`` into :class:`FIDInception`, whose module
and parameter names are torchvision's ``Inception3`` names (``Conv2d_1a_3x3.conv.weight``,
``Conv2d_1a_3x3.bn.running_mean``, ``Mixed_5b.branch1x1.conv.weight``, ..., ``fc.weight``), which the file uses.

The network (input [B, 3, 299, 299] in [-1, 1]):

- every convolution is a ``BasicConv2d``: ``conv`` (no bias) -> ``bn`` (BatchNorm, eps 0.001) -> ReLU;
- stem ``Conv2d_1a_3x3`` (3->32, stride 2), ``Conv2d_2a_3x3`` (32->32), ``Conv2d_2b_3x3`` (32->64, pad 1), max pool
  3/2, ``Conv2d_3b_1x1`` (64->80), ``Conv2d_4a_3x3`` (80->192), max pool 3/2;
- ``Mixed_5b/5c/5d`` (A blocks, pool features 32/64/64), ``Mixed_6a`` (B), ``Mixed_6b..6e`` (C blocks, 7x7 channels
  128/160/160/192), ``Mixed_7a`` (D), ``Mixed_7b`` and ``Mixed_7c`` (E blocks), global average pool -> 2048;
- ``fc`` (2048 -> 1008 classes of the TF graph) is part of the file's state but unused for features.

Differences of the FID variant from torchvision's ImageNet Inception-v3 (pytorch-fid's ``FIDInceptionA/C/E_1/E_2``,
which reproduce the TF graph), implemented here as documented facts:

- the 3x3 average pools of the pool branches of the A, C and first E block (``Mixed_7b``) use
  ``count_include_pad=False`` (TF's average pooling ignores padding);
- the pool branch of the last E block (``Mixed_7c``) uses a 3x3 **max** pool (stride 1, pad 1), not an average pool;
- 1008 output classes (not 1000).

Input handling follows pytorch-fid: images in [-1, 1] are resized to 299x299 with bilinear interpolation
(``align_corners=False``, no antialiasing) and fed without further normalisation.

:meth:`FIDInception.tiny` builds a small randomly initialised extractor with the same interface (channel widths
x 1/16, 75x75 input) for tests: its features are meaningless for reporting.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aniportrait.checkpoint import describe_state_dict_diff
from aniportrait.eval.errors import EvalError
from aniportrait.userfiles import UnreadableFileError, load_torch_file

__all__ = [
    "FID_WEIGHTS_FILE",
    "FID_WEIGHTS_URL",
    "EvalError",
    "FIDInception",
    "load_fid_inception",
    "state_dict_mismatch",
]

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + FID_WEIGHTS_FILE
FID_INPUT_SIZE = 299
FID_NUM_CLASSES = 1008
FEATURE_DIM = 2048
BN_EPS = 0.001
TINY_WIDTH = 1.0 / 16
TINY_INPUT_SIZE = 75  # the smallest input the stride pattern allows (the last E block sees 1x1)


class BasicConv2d(nn.Module):
    """conv (no bias) -> BatchNorm (eps 0.001) -> ReLU; parameters ``conv.weight``, ``bn.{weight,bias,running_*}``."""

    def __init__(self, cin: int, cout: int, kernel_size, stride=1, padding=0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_no_pad(x: Tensor) -> Tensor:
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class _Widths:
    """Channel counts scaled by ``width`` (at least 1)."""

    def __init__(self, width: float) -> None:
        self.width = width

    def __call__(self, channels: int) -> int:
        return max(1, round(channels * self.width))


class InceptionA(nn.Module):
    """35x35 block: 1x1 | 1x1->5x5 | 1x1->3x3->3x3 | avgpool(no pad count)->1x1."""

    def __init__(self, cin: int, pool_features: int, w: _Widths) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, w(64), 1)
        self.branch5x5_1 = BasicConv2d(cin, w(48), 1)
        self.branch5x5_2 = BasicConv2d(w(48), w(64), 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, w(64), 1)
        self.branch3x3dbl_2 = BasicConv2d(w(64), w(96), 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(w(96), w(96), 3, padding=1)
        self.branch_pool = BasicConv2d(cin, w(pool_features), 1)
        self.out_channels = w(64) + w(64) + w(96) + w(pool_features)

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg_pool_no_pad(x))
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):
    """35 -> 17 reduction: 3x3/2 | 1x1->3x3->3x3/2 | maxpool 3/2."""

    def __init__(self, cin: int, w: _Widths) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, w(384), 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, w(64), 1)
        self.branch3x3dbl_2 = BasicConv2d(w(64), w(96), 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(w(96), w(96), 3, stride=2)
        self.out_channels = w(384) + w(96) + cin

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([b3, bd, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions; avg pool without counting the padding."""

    def __init__(self, cin: int, channels_7x7: int, w: _Widths) -> None:
        super().__init__()
        c7 = w(channels_7x7)
        self.branch1x1 = BasicConv2d(cin, w(192), 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, w(192), (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, w(192), (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, w(192), 1)
        self.out_channels = 4 * w(192)

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for i in range(1, 6):
            bd = getattr(self, f"branch7x7dbl_{i}")(bd)
        bp = self.branch_pool(_avg_pool_no_pad(x))
        return torch.cat([b1, b7, bd, bp], 1)


class InceptionD(nn.Module):
    """17 -> 8 reduction: 1x1->3x3/2 | 1x1->1x7->7x1->3x3/2 | maxpool 3/2."""

    def __init__(self, cin: int, w: _Widths) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, w(192), 1)
        self.branch3x3_2 = BasicConv2d(w(192), w(320), 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, w(192), 1)
        self.branch7x7x3_2 = BasicConv2d(w(192), w(192), (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(w(192), w(192), (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(w(192), w(192), 3, stride=2)
        self.out_channels = w(320) + w(192) + cin

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
    """8x8 block with split 1x3 / 3x1 outputs. ``pool="avg"``: average pool without counting the padding
    (``Mixed_7b``); ``pool="max"``: 3x3 max pool (``Mixed_7c`` of the FID graph)."""

    def __init__(self, cin: int, w: _Widths, pool: str) -> None:
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool
        self.branch1x1 = BasicConv2d(cin, w(320), 1)
        self.branch3x3_1 = BasicConv2d(cin, w(384), 1)
        self.branch3x3_2a = BasicConv2d(w(384), w(384), (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(w(384), w(384), (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, w(448), 1)
        self.branch3x3dbl_2 = BasicConv2d(w(448), w(384), 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(w(384), w(384), (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(w(384), w(384), (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, w(192), 1)
        self.out_channels = w(320) + 4 * w(384) + w(192)

    def extra_repr(self) -> str:
        return f"pool={self.pool}"

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        if self.pool == "avg":
            pooled = _avg_pool_no_pad(x)
        else:
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        return torch.cat([b1, b3, bd, self.branch_pool(pooled)], 1)


class FIDInception(nn.Module):
    """FID Inception-v3 up to the final average pool: images [B, 3, H, W] in [-1, 1] -> features [B, feature_dim].

    Args:
        width: channel multiplier (1.0 = the real network, 2048-d features; only 1.0 can load the FID weights).
        input_size: side the input is resized to (bilinear, align_corners=False); 299 for FID.
        num_classes: outputs of the (unused) ``fc`` layer kept for the state_dict; 1008 in the FID graph.
    """

    def __init__(self, width: float = 1.0, input_size: int = FID_INPUT_SIZE, num_classes: int = FID_NUM_CLASSES):
        super().__init__()
        if not width > 0:
            raise EvalError(f"width must be positive, got {width!r}")
        if input_size < TINY_INPUT_SIZE:
            raise EvalError(f"input_size must be at least {TINY_INPUT_SIZE}, got {input_size}")
        w = _Widths(width)
        self.width, self.input_size = float(width), int(input_size)
        self.Conv2d_1a_3x3 = BasicConv2d(3, w(32), 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(w(32), w(32), 3)
        self.Conv2d_2b_3x3 = BasicConv2d(w(32), w(64), 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(w(64), w(80), 1)
        self.Conv2d_4a_3x3 = BasicConv2d(w(80), w(192), 3)
        c = w(192)
        self.Mixed_5b = InceptionA(c, 32, w)
        self.Mixed_5c = InceptionA(self.Mixed_5b.out_channels, 64, w)
        self.Mixed_5d = InceptionA(self.Mixed_5c.out_channels, 64, w)
        self.Mixed_6a = InceptionB(self.Mixed_5d.out_channels, w)
        self.Mixed_6b = InceptionC(self.Mixed_6a.out_channels, 128, w)
        self.Mixed_6c = InceptionC(self.Mixed_6b.out_channels, 160, w)
        self.Mixed_6d = InceptionC(self.Mixed_6c.out_channels, 160, w)
        self.Mixed_6e = InceptionC(self.Mixed_6d.out_channels, 192, w)
        self.Mixed_7a = InceptionD(self.Mixed_6e.out_channels, w)
        self.Mixed_7b = InceptionE(self.Mixed_7a.out_channels, w, pool="avg")
        self.Mixed_7c = InceptionE(self.Mixed_7b.out_channels, w, pool="max")
        self.feature_dim = self.Mixed_7c.out_channels
        self.fc = nn.Linear(self.feature_dim, num_classes)
        # He-normal convolutions keep random activations at unit scale through the 94 ReLU layers (PyTorch's default
        # init shrinks them to ~1e-9), so a random extractor (tests) gives usable features; loading weights replaces it.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        self.eval()

    @classmethod
    def tiny(cls) -> FIDInception:
        """A small randomly initialised extractor (width 1/16, 75x75 input; 128-d features) for tests."""
        return cls(width=TINY_WIDTH, input_size=TINY_INPUT_SIZE)

    def extra_repr(self) -> str:
        return f"width={self.width}, input_size={self.input_size}, feature_dim={self.feature_dim}"

    def forward(self, images: Tensor) -> Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise EvalError(f"images must be [B, 3, H, W] in [-1, 1], got shape {list(images.shape)}")
        x = images.to(self.fc.weight.dtype)
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return x.mean(dim=(2, 3))


def _ignored(key: str) -> bool:
    # BatchNorm's step counter: absent from older state_dicts, filled in by BatchNorm when missing; never used here.
    return key.endswith("num_batches_tracked")


def state_dict_mismatch(model: nn.Module, state: dict) -> str | None:
    """A one-line description of how ``state`` differs from ``model.state_dict()`` (keys and shapes), or None."""
    expected = {k: v for k, v in model.state_dict().items() if not _ignored(k)}
    given = {k: v for k, v in state.items() if not _ignored(k)}
    return describe_state_dict_diff(expected, given, counted=True)


def load_fid_inception(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> FIDInception:
    """Load pytorch-fid's FID Inception weights (``pt_inception-2015-12-05-6726825d.pth``) into a full-size
    :class:`FIDInception`, in eval mode on ``device``.

    Raises:
        EvalError: the file is missing, cannot be read safely (``weights_only=True``), is not a state_dict of
            tensors, or its keys/shapes do not match (the message names them).
    """
    path = os.fspath(path)
    hint = f"; download {FID_WEIGHTS_FILE} from {FID_WEIGHTS_URL}"
    try:
        state = load_torch_file(
            path, "Inception weights", noun="safely loadable torch state_dict", fix=hint.removeprefix("; ")
        )
    except UnreadableFileError as err:
        raise EvalError(str(err)) from None
    if not isinstance(state, dict) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise EvalError(f"{path}: expected a state_dict (a dict of tensors), got {type(state).__name__}{hint}")
    model = FIDInception()
    problem = state_dict_mismatch(model, state)
    if problem:
        raise EvalError(f"{path}: not the FID Inception weights: {problem}{hint}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:  # pragma: no cover - state_dict_mismatch catches key and shape problems first
        raise EvalError(f"{path}: cannot load the FID Inception weights: {str(err).splitlines()[0]}") from None
    return model.to(device).eval()
