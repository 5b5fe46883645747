"""SRVGGNetCompact, Real-ESRGAN's compact VGG-style SR network, in Real-ESRGAN's state-dict layout.

Architecture (Real-ESRGAN ``realesrgan/archs/srvgg_arch.py``, BSD-3, Xintao Wang; the
``realesr-animevideov3`` models): ``body`` is a 3x3 convolution to ``num_feat`` channels and an
activation, ``num_conv`` times a 3x3 convolution and an activation, then a 3x3 convolution to
``num_out_ch * upscale**2`` channels; a pixel shuffle by ``upscale``; plus the input upsampled
by ``upscale`` with nearest neighbour, so the network learns a residual:

    out = pixel_shuffle(body(x), upscale) + nearest_upsample(x, upscale)

Keys: ``body.N.weight`` / ``body.N.bias`` for the convolutions (N = 0, 2, ..., 2 * num_conv + 2)
and ``body.N.weight`` ``(num_feat,)`` for the PReLU slopes (N odd); ReLU and LeakyReLU have no keys.

``out_scale`` adds a final bicubic resize (a = -0.75, replicated borders, as PyTorch and ncnn
both compute it) from ``upscale`` to ``out_scale`` times the input size. The ncnn
``realesr-animevideov3-x2`` and ``-x3`` files are exactly this: the x4 network (the same
weights) followed by a bicubic resize by 0.5 or 0.75, i.e. ``upscale=4, out_scale=2`` or ``3``.

Images: ``(N, num_in_ch, H, W)`` float RGB in [0, 1] in, ``(N, num_out_ch, scale*H, scale*W)``
out on the same scale, not clamped.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import InputError, check_image, whole_number_at_least


class SRVGGNetCompact(nn.Module):
    """The compact Real-ESRGAN network (see the module docstring).

    Args:
        num_in_ch: input channels (3 for RGB).
        num_out_ch: output channels; must equal ``num_in_ch`` for the residual addition.
        num_feat: width of the body.
        num_conv: number of ``num_feat -> num_feat`` convolutions (16 in animevideov3).
        upscale: pixel-shuffle (and nearest-upsampling) factor.
        act_type: ``"prelu"`` (one slope per channel), ``"relu"`` or ``"leakyrelu"`` (slope 0.1).
        out_scale: final scale after a bicubic resize of the x``upscale`` output; ``None``
            means ``upscale`` (no resize).

    Attributes:
        scale: the output size over the input size (``out_scale`` or ``upscale``).
        config: the constructor kwargs plus ``"arch": "srvgg"`` (JSON-serialisable).

    Example:
        >>> net = SRVGGNetCompact(num_feat=4, num_conv=2, upscale=4, out_scale=2).eval()
        >>> net(torch.rand(1, 3, 12, 12)).shape
        torch.Size([1, 3, 24, 24])
        >>> sorted(k for k in net.state_dict() if k.startswith("body.1"))
        ['body.1.weight']
    """

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_conv: int = 16,
                 upscale: int = 4, act_type: Literal["relu", "prelu", "leakyrelu"] = "prelu",
                 out_scale: int | None = None) -> None:
        super().__init__()
        if num_out_ch != num_in_ch:
            raise InputError(f"SRVGGNetCompact adds the upsampled input: expected num_out_ch == num_in_ch, "
                             f"got {num_out_ch} and {num_in_ch}")
        if act_type not in ("relu", "prelu", "leakyrelu"):
            raise InputError(f"expected act_type in ('relu', 'prelu', 'leakyrelu'), got {act_type!r}")
        upscale = whole_number_at_least(upscale, "SRVGGNetCompact upscale", 1)
        if out_scale is not None:
            out_scale = whole_number_at_least(out_scale, "SRVGGNetCompact out_scale", 1)
        self.upscale = upscale
        self.scale = out_scale or upscale
        self.num_in_ch = num_in_ch
        self.config = {"arch": "srvgg", "num_in_ch": num_in_ch, "num_out_ch": num_out_ch, "num_feat": num_feat,
                       "num_conv": num_conv, "upscale": self.upscale, "act_type": act_type}
        if out_scale is not None:
            self.config["out_scale"] = int(out_scale)

        def act() -> nn.Module:
            if act_type == "prelu":
                return nn.PReLU(num_parameters=num_feat)
            return nn.ReLU() if act_type == "relu" else nn.LeakyReLU(0.1)

        layers: list[nn.Module] = [nn.Conv2d(num_in_ch, num_feat, 3, 1, 1), act()]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), act()]
        layers.append(nn.Conv2d(num_feat, num_out_ch * self.upscale ** 2, 3, 1, 1))
        self.body = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Upscale ``(N, num_in_ch, H, W)`` in [0, 1] to ``(N, num_out_ch, scale*H, scale*W)``, not clamped.

        The range is not checked here (it would cost a device sync per call); callers check
        it once with :func:`genrestore._checks.check_image`.

        Raises:
            InputError: wrong shape or dtype.
        """
        check_image(x, "low-resolution image", channels=(self.num_in_ch,), check_range=False)
        out = x
        for layer in self.body:
            out = layer(out)
        out = F.pixel_shuffle(out, self.upscale) + F.interpolate(x, scale_factor=self.upscale, mode="nearest")
        if self.scale != self.upscale:
            h, w = x.shape[-2:]
            out = F.interpolate(out, size=(h * self.scale, w * self.scale), mode="bicubic", align_corners=False)
        return out
