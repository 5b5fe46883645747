"""LPIPS (Zhang et al. 2018), version 0.1, with AlexNet or VGG16 features.

``d(x, y) = sum_l mean_hw( w_l . (f_l(x) / |f_l(x)| - f_l(y) / |f_l(y)|)^2 )`` where ``f_l`` are
backbone activations at five taps of inputs mapped to [-1, 1] and shifted/scaled per channel
(``shift = (-.030, -.088, -.188)``, ``scale = (.458, .448, .450)``), ``|.|`` is the channel-wise
L2 norm (plus 1e-10) and ``w_l`` the learned non-negative linear heads.

Weights: the heads ship with genrestore (``lpips-alex-v0.1``, ``lpips-vgg-v0.1``, converted from
the ``lpips`` 0.1.4 wheel, BSD-2-Clause); the backbones load from the local store
(``alexnet-torchvision``, ``vgg16-torchvision``). A missing backbone raises
:class:`~genrestore.weights.WeightNotFound` with how to install it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import torch
from torch import nn

from .._checks import InputError, check_image
from ..models.backbones import ALEXNET_TAPS, VGG16_TAPS, FeatureTaps, alexnet_features, vgg16_features

Net = Literal["alex", "vgg"]
_CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}
BACKBONE_WEIGHT = {"alex": "alexnet-torchvision", "vgg": "vgg16-torchvision"}
MIN_SIZE = {"alex": 31, "vgg": 16}  # the smallest side, px, whose features reach the last tap


def check_lpips_size(h: int, w: int, net: str) -> None:
    """Raise :class:`InputError` unless an ``h`` x ``w`` image reaches ``net``'s last feature tap."""
    if min(h, w) < MIN_SIZE[net]:
        raise InputError(f"LPIPS {net} needs images of at least {MIN_SIZE[net]} px a side, got {w}x{h}")


HEADS_WEIGHT = {"alex": "lpips-alex-v0.1", "vgg": "lpips-vgg-v0.1"}


class LPIPS(nn.Module):
    """LPIPS distance. Build it with :meth:`from_store`, or empty and load state dicts yourself.

    Input: two ``(N, 3, H, W)`` batches in [0, 1]. Output: ``(N,)`` distances (lower is closer).
    """

    higher_is_better = False

    def __init__(self, net: Net = "alex") -> None:
        super().__init__()
        if net not in _CHANNELS:
            raise InputError(f"unknown LPIPS network {net!r}; expected alex or vgg")
        self.net_name = net
        self.backbone = FeatureTaps(alexnet_features() if net == "alex" else vgg16_features(),
                                    ALEXNET_TAPS if net == "alex" else VGG16_TAPS)
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in _CHANNELS[net])
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.requires_grad_(False)

    def load_heads(self, state: dict[str, torch.Tensor]) -> None:
        """Load heads from the ``lpips`` package layout (``lin{k}.model.1.weight``)."""
        for k, head in enumerate(self.heads):
            key = f"lin{k}.model.1.weight"
            if key not in state:
                raise KeyError(f"LPIPS heads lack {key}")
            head.weight.data.copy_(state[key])

    @classmethod
    def from_store(cls, net: Net = "alex") -> LPIPS:
        """Build from the local weight store (heads shipped; backbone added by the user)."""
        from .. import weights as ws

        model = cls(net)
        ws.load_into(HEADS_WEIGHT[net], model.load_heads, f"LPIPS-{net}")
        ws.load_into(BACKBONE_WEIGHT[net], model.backbone.load_torchvision, f"LPIPS-{net}")
        return model.eval()

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = x.to(self.shift.dtype)  # the model's dtype: float64 images must not meet float32 convolutions
        return self.backbone((2 * x - 1 - self.shift) / self.scale)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_image(x, "first image", channels=(3,), check_range=False)
        check_image(y, "second image", channels=(3,), check_range=False)
        if x.shape != y.shape:
            raise InputError(f"images differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
        check_lpips_size(*x.shape[-2:], self.net_name)
        total = x.new_zeros(x.shape[0])
        for head, fx, fy in zip(self.heads, self.features(x), self.features(y)):
            fx = fx / (fx.square().sum(1, keepdim=True).sqrt() + 1e-10)
            fy = fy / (fy.square().sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + head((fx - fy).square()).mean(dim=(1, 2, 3))
        if not torch.isfinite(total).all():  # NaN/inf in an input reach the distance: check it there
            for t, name in ((x, "first"), (y, "second")):
                if not torch.isfinite(t).all():
                    raise InputError(f"{name} image has NaN or infinite values")
        return total


@lru_cache(maxsize=4)
def _cached(net: str, device: str, files: tuple[tuple[str, int], ...]) -> LPIPS:
    return LPIPS.from_store(net).to(device)


def lpips(x: torch.Tensor, y: torch.Tensor, net: Net = "alex") -> torch.Tensor:
    """LPIPS distance per image, ``(N,)``, with the model from the weight store.

    The model is cached per device and per weight files (path and modification time), so
    adding or replacing a weight takes effect at the next call.

    Args:
        x, y: ``(N, 3, H, W)`` float images in [0, 1].
        net: ``"alex"`` or ``"vgg"`` backbone.

    Returns:
        ``(N,)`` distances, lower is closer, without gradient: as a loss use
        ``LPIPS.from_store(net)`` (a module that autograd runs through).
    """
    from .. import weights as ws

    if net not in BACKBONE_WEIGHT:
        raise InputError(f"unknown LPIPS net {net!r}; expected one of {', '.join(BACKBONE_WEIGHT)}")
    # the metric takes images in [0, 1] (the module, also a loss, leaves the range to its caller)
    check_image(x, "first image", channels=(3,))
    check_image(y, "second image", channels=(3,))
    paths = (ws.resolve(BACKBONE_WEIGHT[net]), ws.resolve(HEADS_WEIGHT[net]))
    key = tuple((str(p), p.stat().st_mtime_ns) for p in paths)
    with torch.no_grad():  # not inference_mode: scores may be summed in place (s += lpips(...))
        return _cached(net, str(x.device), key)(x, y)
